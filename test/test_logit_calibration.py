"""Logit offsets: the manifest field, the predictor that applies them, the search that chooses
them (evaluation/logit_calibration.py) and `spacenav calibrate segmentation` / `export
--logit-offset` / `eval --logit-offset`."""
import json

import numpy as np
import pytest

from spacenav_perception.cli import main as cli_main
from spacenav_perception.core.engine import InferenceEngine
from spacenav_perception.core.manifest import ModelIntegrityError, load_manifest
from spacenav_perception.core.segmentation_predictor import SegmentationPredictor
from spacenav_perception.evaluation.logit_calibration import OffsetSearch
from spacenav_perception.nets.reference import expected_classes, export_reference_model
from spacenav_perception.training.segmentation_task import list_samples, read_sample

from fake_datasets import make_lunar_set


def naive_confusion(scores, truth, offset):
    pred = (scores + np.asarray(offset, np.float32)[:, None, None]).argmax(0)
    cm = np.zeros((scores.shape[0],) * 2, np.int64)
    np.add.at(cm, (truth.reshape(-1), pred.reshape(-1)), 1)
    return cm


def with_offset(model, offset):
    """Rewrite the reference model's manifest with a logit_offset (files unchanged)."""
    path = model.with_suffix('.json')
    manifest = json.loads(path.read_text())
    manifest['logit_offset'] = offset
    path.write_text(json.dumps(manifest))
    return model


def test_search_counts_every_candidate_as_a_plain_argmax_would():
    """The shortcut (pixels no candidate can move are counted once) changes nothing: each
    candidate's confusion matrix equals that of argmax(scores + offset) over all pixels,
    including ties and candidates that move a class outside the searched ones."""
    rng = np.random.default_rng(0)
    search = OffsetSearch(4, classes=(1, 2), values=(-1.0, -0.25, 0.0, 0.5),
                          extra=[(0.0, -0.5, -1.0, 0.25)])
    frames = []
    for _ in range(3):
        scores = rng.normal(size=(4, 20, 30)).astype(np.float32)
        scores[1, :5] = scores[0, :5]            # exact ties go to the lower class id
        scores[3, 10:] += 3.0                    # a confident class without an offset
        truth = rng.integers(0, 4, (20, 30)).astype(np.uint8)
        search.add(scores, truth)
        frames.append((scores, truth))
    assert search.frames == 3 and search.candidates[0] == (0.0,) * 4
    assert len(search.candidates) == 4 * 4 + 1   # the grid (zeros among it) + the extra one
    for k, offset in enumerate(search.candidates):
        want = sum(naive_confusion(s, t, offset) for s, t in frames)
        np.testing.assert_array_equal(search.confusion[k], want)
    best = search.best_index()
    mious = [search.summary(k)['miou'] for k in range(len(search.candidates))]
    assert mious[best] == max(mious)
    with pytest.raises(ValueError, match='distinct class ids'):
        OffsetSearch(4, classes=(1, 1))
    with pytest.raises(ValueError, match='do not fit'):
        search.add(np.zeros((3, 20, 30), np.float32), np.zeros((20, 30), np.uint8))


def test_search_finds_the_offset_that_undoes_an_overconfident_class():
    """Scores that call too much small rock (its logit is 1 too high, so ground pixels are a
    coin flip between ground and rock): the best offset on the grid takes the 1 back off."""
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, (64, 64)).astype(np.uint8)
    scores = np.full((4, 64, 64), -5.0, np.float32)
    scores[0] = (truth == 0) + rng.normal(0, 0.3, truth.shape)
    scores[1] = (truth == 1) + rng.normal(0, 0.3, truth.shape) + 1.0
    search = OffsetSearch(4, classes=(1,), values=(-2.0, -1.5, -1.0, -0.5, 0.0, 0.5))
    search.add(scores, truth)
    best = search.summary(search.best_index(), ['ground', 'small_rock', 'large_rock', 'sky'])
    assert best['logit_offset'] == [0.0, -1.0, 0.0, 0.0]
    assert best['iou']['small_rock'] > 0.9
    none = search.summary(0)
    assert none['iou']['1'] < 0.75                      # no offset: ground called rock
    # recall / precision of the searched class: the rock pixels called rock / all called rock
    cm = naive_confusion(scores, truth, [0.0] * 4)
    assert none['recall'] == pytest.approx(cm[1, 1] / cm[1].sum())
    assert none['precision'] == pytest.approx(cm[1, 1] / cm[:, 1].sum())
    assert best['recall'] < none['recall'] and best['precision'] > none['precision']
    # keeping the recall of no offset: the best mIoU among the candidates that do
    keep = search.best_index(min_recall=none['recall'])
    assert search.recall_precision(keep)[0] >= none['recall']
    assert search.summary(keep)['miou'] == max(
        search.summary(k)['miou'] for k in range(len(search.candidates))
        if search.recall_precision(k)[0] >= none['recall'])
    assert search.best_index(min_recall=1.01) is None


def test_predictor_applies_the_manifests_offset_unless_given_one(tmp_path):
    """ThresholdSegmenter logits (0.25, G, B, R): +0.2 on small rock turns the pixels with
    0.05 < G < 0.25 that were ground (every channel < 0.25) into small rock."""
    ref = export_reference_model('segmentation', tmp_path, 24, 32)
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[:, :16, 1] = 40                   # G = 0.157: ground without an offset
    rgb[:, 16:, 1] = 5                    # G = 0.02: ground either way
    plain = SegmentationPredictor(InferenceEngine(ref), compute_safe_site=False,
                                  min_hazard_region_px=0)
    assert plain.logit_offset == ()
    np.testing.assert_array_equal(plain.predict(rgb, 'rgb8').classes,
                                  expected_classes(rgb / 255.0))
    assert not plain.predict(rgb, 'rgb8').classes.any()
    with_offset(ref, [0.0, 0.2, 0.0, 0.0])
    engine = InferenceEngine(ref)
    assert engine.manifest.logit_offset == [0.0, 0.2, 0.0, 0.0]
    for flip in (True, False):            # the offset is on the mean of the flip, not the sum
        shifted = SegmentationPredictor(engine, compute_safe_site=False, min_hazard_region_px=0,
                                        flip_average=flip)
        classes = shifted.predict(rgb, 'rgb8').classes
        assert (classes[:, :16] == 1).all() and (classes[:, 16:] == 0).all()
        np.testing.assert_allclose(shifted.scores(rgb, 'rgb8')[1], rgb[..., 1] / 255.0 + 0.2,
                                   atol=1e-6)
    override = SegmentationPredictor(engine, compute_safe_site=False, min_hazard_region_px=0,
                                     logit_offset=[0, 0, 0, 0])
    assert not override.predict(rgb, 'rgb8').classes.any()
    with pytest.raises(ValueError, match='3 value'):
        SegmentationPredictor(engine, logit_offset=[0.0, 0.1, 0.2])
    with pytest.raises(ValueError, match='finite'):
        SegmentationPredictor(engine, logit_offset=[0.0, float('nan'), 0.0, 0.0])


@pytest.mark.parametrize('offset, problem', [([0.0, 1.0], 'one per class'),
                                             ([0.0, 'x', 0.0, 0.0], 'finite numbers'),
                                             (0.5, 'not a list')])
def test_manifest_refuses_an_offset_it_cannot_apply(tmp_path, offset, problem):
    ref = with_offset(export_reference_model('segmentation', tmp_path, 8, 8), offset)
    with pytest.raises(ModelIntegrityError, match=problem):
        load_manifest(ref)


def test_manifest_refuses_an_offset_on_a_centroid_model(tmp_path):
    ref = with_offset(export_reference_model('centroid', tmp_path, 8, 8), [0.0, 1.0])
    with pytest.raises(ModelIntegrityError, match='for segmentation models'):
        load_manifest(ref)


def test_calibrate_eval_and_export_through_the_cli(tmp_path, capsys):
    """calibrate finds the offset that the ThresholdSegmenter needs on these frames (their
    rocks are not green or blue enough for it), eval --logit-offset scores it, and export
    --logit-offset writes it into a trained model's manifest."""
    data = make_lunar_set(tmp_path / 'data', n=2)
    ref = export_reference_model('segmentation', tmp_path / 'ref', 48, 64)
    capsys.readouterr()
    assert cli_main(['calibrate', 'segmentation', '--data', str(data), str(data), '--model',
                     str(ref), '--values', '-0.5', '0', '0.5', '--no-flip-average',
                     '--json']) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r['n'] == 4 and r['classes'] == ['small_rock', 'large_rock'] and r['candidates'] == 9
    assert r['manifest'] is None and r['none']['logit_offset'] == [0.0] * 4
    cms = {}
    for off in ([0.0] * 4, r['best']['logit_offset']):
        cm = np.zeros((4, 4), np.int64)
        for sample in list_samples(data):
            img, truth = read_sample(sample)
            rgb = img.astype(np.float32) / 255.0
            scores = np.stack([np.full(truth.shape, 0.25, np.float32), rgb[..., 1],
                               rgb[..., 2], rgb[..., 0]])     # ThresholdSegmenter's logits
            cm += 2 * naive_confusion(scores, truth, off)    # each folder given twice
        tp = np.diag(cm)
        cms[tuple(off)] = (cm, float(np.mean(tp / (cm.sum(0) + cm.sum(1) - tp))))
    assert r['none']['miou'] == pytest.approx(cms[(0.0,) * 4][1])
    cm, miou = cms[tuple(r['best']['logit_offset'])]
    assert r['best']['logit_offset'] != [0.0] * 4 and r['best']['miou'] == pytest.approx(miou)
    assert r['best']['miou'] > r['none']['miou']
    # eval with the offset given on the command line = the search's figure for it (no specks)
    assert cli_main(['eval', 'segmentation', '--data', str(data), '--model', str(ref), '--json',
                     '--min-hazard-region-px', '0', '--no-flip-average', '--logit-offset',
                     *map(str, r['best']['logit_offset'])]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev['logit_offset'] == r['best']['logit_offset']
    assert ev['n'] == 2 and ev['miou'] == pytest.approx(r['best']['miou'])
    np.testing.assert_array_equal(np.asarray(ev['confusion_matrix']) * 2, cm)
    assert cli_main(['eval', 'segmentation', '--data', str(data), '--model', str(ref),
                     '--logit-offset', '0', '1']) == 2
    assert 'logit_offset has 2 value(s)' in capsys.readouterr().err
    # the table, and a recall floor no offset reaches
    assert cli_main(['calibrate', 'segmentation', '--data', str(data), '--model', str(ref),
                     '--values', '0', '0.5']) == 0
    text = capsys.readouterr().out
    assert 'small_rock+large_rock recall / precision' in text and '--logit-offset' in text
    assert cli_main(['calibrate', 'segmentation', '--data', str(data), '--model', str(ref),
                     '--values', '0', '0.5', '--min-recall', '1.01']) == 0
    assert 'no candidate keeps the small_rock+large_rock recall at 1.01' in capsys.readouterr().out


def test_export_writes_the_offset_and_refuses_one_that_does_not_fit(tmp_path, capsys):
    from spacenav_perception.export import export_model
    from spacenav_perception.nets.reference import ThresholdSegmenter
    config = {'task': 'segmentation', 'arch': 'ThresholdSegmenter', 'output': 'logits_nchw',
              'input': {'height': 8, 'width': 8, 'channels': 3, 'resize': 'area',
                        'mean': [0.0], 'std': [1.0]},
              'class_names': ['ground', 'small_rock', 'large_rock', 'sky']}
    export_model(ThresholdSegmenter(), config, tmp_path / 'seg.ts', ('ts',),
                 export_command='x', logit_offset=[0, -0.5, -1, 0], log=lambda *_: None)
    assert load_manifest(tmp_path / 'seg.ts').logit_offset == [0.0, -0.5, -1.0, 0.0]
    with pytest.raises(ValueError, match='one per class'):
        export_model(ThresholdSegmenter(), config, tmp_path / 'bad.ts', ('ts',),
                     logit_offset=[0, 1], log=lambda *_: None)
    assert not (tmp_path / 'bad.ts').exists()
    centroid = dict(config, task='centroid', output='xy_norm_logit', class_names=[])
    with pytest.raises(ValueError, match='for segmentation models'):
        export_model(ThresholdSegmenter(), centroid, tmp_path / 'c.ts', ('ts',),
                     logit_offset=[0, 1], log=lambda *_: None)


def test_cli_names_an_unusable_model_or_dataset_without_a_traceback(tmp_path, capsys):
    data = make_lunar_set(tmp_path / 'data', n=1)
    assert cli_main(['eval', 'segmentation', '--data', str(data), '--model',
                     str(tmp_path / 'missing.ts')]) == 2
    err = capsys.readouterr().err
    assert 'spacenav eval: error: model' in err and 'does not exist' in err
    assert 'Traceback' not in err
    assert cli_main(['calibrate', 'segmentation', '--data', str(tmp_path / 'nothing')]) == 2
    err = capsys.readouterr().err
    assert 'spacenav calibrate: error:' in err and 'no render/clean pairs' in err
