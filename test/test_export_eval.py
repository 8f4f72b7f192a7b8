"""Export (ts / pt2 / onnx + one manifest) and evaluation through the runtime path."""
import csv
import json

import numpy as np
import pytest
import torch

from spacenav_perception.cli import main as cli_main
from spacenav_perception.core.centroid_predictor import CentroidPredictor
from spacenav_perception.core.engine import InferenceEngine
from spacenav_perception.core.manifest import load_manifest, sha256_file
from spacenav_perception.evaluation.baselines import centre_of_brightness
from spacenav_perception.export import export_checkpoint
from spacenav_perception.training.centroid_task import CentroidTask
from spacenav_perception.training.segmentation_task import SegmentationTask
from spacenav_perception.training.trainer import TrainConfig, Trainer

from fake_datasets import make_asteroid_set, make_lunar_set


@pytest.fixture(scope='module')
def centroid_run(tmp_path_factory):
    root = tmp_path_factory.mktemp('centroid')
    data = make_asteroid_set(root / 'data', n=6, size=128, seed=4, sun_dirs=True)
    task = CentroidTask(data, data, 'centroidnet', input_size=64)
    Trainer(task, TrainConfig(out=str(root / 'run'), epochs=1, batch_size=3, threads=1)).fit()
    return root, data


def test_export_all_formats_one_manifest_same_outputs(centroid_run, capsys):
    root, data = centroid_run
    out = root / 'models' / 'centroid.ts'
    result = export_checkpoint(root / 'run' / 'best.pt', out, ('ts', 'pt2', 'onnx'),
                               export_command='spacenav export ...')
    files = {p.split('/')[-1] for p in result['files']}
    assert 'centroid.ts' in files and not result['failed'], result['failed']
    manifest = json.loads((root / 'models' / 'centroid.json').read_text())
    assert set(manifest['files']) == files
    for name, digest in manifest['files'].items():
        assert sha256_file(root / 'models' / name) == digest
    assert manifest['task'] == 'centroid' and manifest['arch'] == 'centroidnet'
    assert manifest['output'] == 'xy_norm_logit'
    assert manifest['input']['height'] == 64 and manifest['input']['channels'] == 1
    assert 'val_median_px' in manifest['metrics'] and manifest['training']['command'] is not None
    # every format gives the same prediction through the node's runtime path
    img = (np.random.default_rng(0).random((128, 128)) * 255).astype(np.uint8)
    results = []
    for name in sorted(files):
        path = root / 'models' / name
        load_manifest(path, expected_task='centroid')
        pred = CentroidPredictor(InferenceEngine(path, device='cpu')).predict(img, 'mono8')
        results.append((pred.x, pred.y, pred.confidence))
    for r in results[1:]:
        assert r == pytest.approx(results[0], abs=1e-3)


def test_zoom_refine_travels_from_export_to_eval(centroid_run, capsys, tmp_path):
    """export --zoom-refine writes the manifest key; eval uses it unless told otherwise; a value
    that would cut the body is refused by both with one line."""
    root, data = centroid_run
    out = tmp_path / 'zoom' / 'centroid.ts'
    assert cli_main(['export', '--checkpoint', str(root / 'run' / 'best.pt'), '--out', str(out),
                     '--formats', 'ts', '--zoom-refine', '2.25']) == 0
    manifest = json.loads(out.with_suffix('.json').read_text())
    assert manifest['zoom_refine'] == 2.25 and '--zoom-refine 2.25' in manifest['export_command']
    capsys.readouterr()
    for given, expected in ((None, 2.25), ('0', 0.0)):
        extra = ['--zoom-refine', given] if given else []
        assert cli_main(['eval', 'centroid', '--data', str(data), '--model', str(out), '--json',
                         '--min-confidence', '0'] + extra) == 0
        r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert r['zoom_refine'] == expected and r['n'] == 6
        assert (r['n_refined'] > 0) == bool(expected)
    assert cli_main(['eval', 'centroid', '--data', str(data), '--model', str(out),
                     '--zoom-refine', '0.5']) == 2
    assert 'zoom_refine 0.5 must be 0 (off) or in' in capsys.readouterr().err
    assert cli_main(['export', '--checkpoint', str(root / 'run' / 'best.pt'), '--out',
                     str(tmp_path / 'bad' / 'centroid.ts'), '--zoom-refine', '20']) == 2
    assert 'zoom_refine 20.0 must be' in capsys.readouterr().out


def test_eval_centroid_json_through_cli(centroid_run, capsys, tmp_path):
    root, data = centroid_run
    model = root / 'models' / 'centroid.ts'
    if not model.exists():
        export_checkpoint(root / 'run' / 'best.pt', model, ('ts',), export_command='x')
    capsys.readouterr()
    assert cli_main(['eval', 'centroid', '--data', str(data), '--model', str(model), '--json',
                     '--out', str(tmp_path / 'ev'), '--min-confidence', '0']) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for k in ('n', 'mean_px', 'median_px', 'p90_px', 'p95_px', 'max_px', 'n_no_target'):
        assert k in r
    assert r['n'] == 6 and r['n_no_target'] == 0
    assert set(r['baselines']['cob']) >= {'n', 'mean_px', 'median_px', 'p90_px', 'p95_px', 'max_px'}
    assert r['by_phase'] and (tmp_path / 'ev' / 'centroid_errors.png').is_file()
    # meta.csv explains the frames: every disc is whole in the frame, and the scale-free error
    # is the per-frame error over the disc's apparent diameter
    assert [(b['cut_by_edge'], b['n']) for b in r['by_edge_cut']] == [(0, 6)]
    rows = list(csv.DictReader(open(tmp_path / 'ev' / 'per_frame.csv')))
    # and by the renderer's reflectance law family (the first word of meta's `reflectance`)
    assert [(b['reflectance'], b['n']) for b in r['by_reflectance']] == [('mcewen', 3),
                                                                        ('minnaert', 3)]
    for b in r['by_reflectance']:
        mine = [float(row['error_px']) for row in rows if row['reflectance'] == b['reflectance']]
        assert b['median_px'] == pytest.approx(np.median(mine), abs=1e-3)
    diam = {m['image_name']: float(m['apparent_diameter_px'])
            for m in csv.DictReader(open(data / 'meta.csv'))}
    ratios = [float(row['error_px']) / diam[row['image_name']] for row in rows]
    assert r['relative_to_diameter']['model']['n'] == 6
    assert r['relative_to_diameter']['model']['median'] == pytest.approx(np.median(ratios),
                                                                         rel=1e-3)
    # each row carries the label and the prediction its error was computed from
    labels = {m['image_name']: m for m in csv.DictReader(open(data / 'labels.csv'))}
    for row in rows:
        lab = labels[row['image_name']]
        assert float(row['x_true']) == pytest.approx(float(lab['x_coordinate']), abs=1e-4)
        assert float(row['y_true']) == pytest.approx(float(lab['y_coordinate']), abs=1e-4)
        dx = float(row['x_pred']) - float(row['x_true'])
        dy = float(row['y_pred']) - float(row['y_true'])
        assert np.hypot(dx, dy) == pytest.approx(float(row['error_px']), abs=2e-4)
        assert 0.0 <= float(row['confidence']) <= 1.0
    assert r['relative_to_diameter']['cob']['n'] == 6
    # the error split along / across the sun's direction in the image, from meta's sun_cam_x/y
    meta = {m['image_name']: m for m in csv.DictReader(open(data / 'meta.csv'))}
    along, across = [], []
    for row in rows:
        a = np.arctan2(float(meta[row['image_name']]['sun_cam_y']),
                       float(meta[row['image_name']]['sun_cam_x']))
        dx = float(row['x_pred']) - float(row['x_true'])
        dy = float(row['y_pred']) - float(row['y_true'])
        along.append(dx * np.cos(a) + dy * np.sin(a))
        across.append(-dx * np.sin(a) + dy * np.cos(a))
        assert float(row['along_sun_px']) == pytest.approx(along[-1], abs=2e-3)
        assert float(row['across_sun_px']) == pytest.approx(across[-1], abs=2e-3)
    everything = r['by_sun_axis'][0]
    assert everything['phase_deg'] == 'all' and everything['n'] == 6
    assert everything['median_along_px'] == pytest.approx(np.median(along), abs=1e-3)
    assert everything['median_abs_across_px'] == pytest.approx(np.median(np.abs(across)), abs=1e-3)
    assert sum(b['n'] for b in r['by_sun_axis'][1:]) == 6


def test_sun_axis_sign_convention_on_lit_discs(tmp_path):
    """The centre of brightness of a disc lit from one side lies towards the sun: its error
    along the sun axis is positive, and it has none across it."""
    from spacenav_perception.evaluation.centroid_eval import sun_axis_errors
    from spacenav_perception.training.centroid_task import read_dataset
    from spacenav_perception.data.asteroid_dataset import read_image
    data = make_asteroid_set(tmp_path / 'd', n=8, size=128, seed=7, sun_dirs=True)
    true, pred, sun = [], [], []
    for rec in read_dataset(data):
        true.append((rec.x, rec.y))
        pred.append(centre_of_brightness(read_image(rec.path)))
        sun.append((float(rec.meta['sun_cam_x']), float(rec.meta['sun_cam_y'])))
    along, across = sun_axis_errors(true, pred, sun)
    assert (along > 1.0).all(), along
    assert np.abs(across).max() < 0.25 * along.min(), (along, across)
    # rotating the sun a quarter turn counter-clockwise on screen moves the error across it
    rot = np.asarray(sun) @ np.array([[0.0, -1.0], [1.0, 0.0]])
    along2, across2 = sun_axis_errors(true, pred, rot)
    assert across2 == pytest.approx(along, abs=1e-9)
    assert np.isnan(sun_axis_errors([(0, 0)], [(1, 1)], [(0.0, 0.0)])[0]).all()


def test_d4_export_is_the_averaged_network_in_every_format(centroid_run, tmp_path):
    from spacenav_perception.export import load_checkpoint_model
    from spacenav_perception.nets.centroid_net import D4Averaged
    root, data = centroid_run
    out = tmp_path / 'centroid.ts'
    result = export_checkpoint(root / 'run' / 'best.pt', out, ('ts', 'onnx'), tta='d4',
                               export_command='x')
    assert not result['failed'], result['failed']
    manifest = json.loads((tmp_path / 'centroid.json').read_text())
    assert manifest['export']['test_time_augmentation'] == 'd4'
    model, _ = load_checkpoint_model(root / 'run' / 'best.pt')
    x = torch.rand(2, 1, 64, 64)
    with torch.inference_mode():
        want = D4Averaged(model)(x)
        assert torch.allclose(torch.jit.load(str(out))(x), want, atol=1e-5)
        assert not torch.allclose(model(x), want, atol=1e-5)     # it is not the plain net
    import onnxruntime as ort
    sess = ort.InferenceSession(str(tmp_path / 'centroid.onnx'), providers=['CPUExecutionProvider'])
    got = sess.run(None, {sess.get_inputs()[0].name: x[:1].numpy()})[0]   # exported for batch 1
    assert np.allclose(got, want[:1].numpy(), atol=1e-4)
    # an unknown mode is a clear error, and nothing is written
    with pytest.raises(ValueError, match='unknown test-time augmentation'):
        export_checkpoint(root / 'run' / 'best.pt', tmp_path / 'x.ts', ('ts',), tta='bogus')
    assert not (tmp_path / 'x.ts').exists()
    with pytest.raises(ValueError, match="'hflip' applies to segmentation"):
        export_checkpoint(root / 'run' / 'best.pt', tmp_path / 'x.ts', ('ts',), tta='hflip')
    assert not (tmp_path / 'x.ts').exists()


def test_init_from_a_shipped_model_takes_its_weights_after_its_manifest_checks(centroid_run,
                                                                              tmp_path):
    """`spacenav train --init models/NAME.ts` fine-tunes the shipped model: the same tensors as
    the checkpoint it was exported from, and only after the manifest's checks pass."""
    from spacenav_perception.training.trainer import IncompatibleCheckpoint, load_init_state
    root, data = centroid_run
    out = tmp_path / 'plain' / 'centroid.ts'
    export_checkpoint(root / 'run' / 'best.pt', out, ('ts',), export_command='x')
    state = load_init_state(out, 'centroid')
    trained = torch.load(root / 'run' / 'best.pt', weights_only=True)['model']
    assert state.keys() == trained.keys()
    assert all(torch.equal(state[k], trained[k]) for k in trained)
    with pytest.raises(IncompatibleCheckpoint, match="a 'segmentation' model is needed"):
        load_init_state(out, 'segmentation')
    tta = tmp_path / 'tta' / 'centroid.ts'
    export_checkpoint(root / 'run' / 'best.pt', tta, ('ts',), tta='d4', export_command='x')
    with pytest.raises(IncompatibleCheckpoint, match='test-time augmentation'):
        load_init_state(tta, 'centroid')
    blob = bytearray(out.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    out.write_bytes(bytes(blob))
    with pytest.raises(IncompatibleCheckpoint, match='sha256'):
        load_init_state(out, 'centroid')


def test_thesis_model_exports_and_evaluates(tmp_path, capsys):
    data = make_asteroid_set(tmp_path / 'data', n=3, size=128, seed=5)
    task = CentroidTask(data, data, 'thesis')
    Trainer(task, TrainConfig(out=str(tmp_path / 'run'), epochs=1, batch_size=3, lr=1e-4,
                              threads=1)).fit()
    export_checkpoint(tmp_path / 'run' / 'best.pt', tmp_path / 'thesis.ts', ('ts',),
                      export_command='x')
    assert json.loads((tmp_path / 'thesis.json').read_text())['output'] == 'xy_input_px'
    capsys.readouterr()
    assert cli_main(['eval', 'centroid', '--data', str(data), '--model',
                     str(tmp_path / 'thesis.ts'), '--json']) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r['n'] == 3 and r['n_no_target'] == 0


def test_centre_of_brightness_of_a_uniform_disc_is_its_centre():
    yy, xx = np.mgrid[:101, :121]
    img = np.where((xx - 70.0) ** 2 + (yy - 40.0) ** 2 <= 15 ** 2, 200, 10).astype(np.uint8)
    x, y = centre_of_brightness(img)
    assert (x, y) == pytest.approx((70.0, 40.0), abs=1e-9)
    assert np.isnan(centre_of_brightness(np.zeros((8, 8), np.uint8))[0])


def test_segmentation_export_and_eval(tmp_path, capsys):
    data = make_lunar_set(tmp_path / 'data', n=3)
    task = SegmentationTask(data, data, 'hazardnet', input_hw=(32, 64))
    Trainer(task, TrainConfig(out=str(tmp_path / 'run'), epochs=1, batch_size=3, threads=1)).fit()
    export_checkpoint(tmp_path / 'run' / 'best.pt', tmp_path / 'hazard.ts', ('ts', 'onnx'),
                      export_command='x')
    capsys.readouterr()
    assert cli_main(['eval', 'segmentation', '--data', str(data), '--model',
                     str(tmp_path / 'hazard.onnx'), '--json', '--out', str(tmp_path / 'ev')]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r['n'] == 3 and 0 <= r['miou'] <= 1 and 0 <= r['pixel_accuracy'] <= 1
    assert set(r['iou']) == {'ground', 'small_rock', 'large_rock', 'sky'}
    assert np.asarray(r['confusion_matrix']).sum() == 3 * 48 * 64      # frame resolution
    assert r['rocks']['frames'] == 3 and set(r['rocks']['totals']) == {'small_rock', 'large_rock'}
    assert (tmp_path / 'ev' / 'confusion_matrix.png').is_file()
    # hflip test-time averaging: the exported graph is the mean of the frame's logits and the
    # mirrored frame's logits flipped back, in both formats; d4 is refused for segmentation
    from spacenav_perception.export import load_checkpoint_model
    from spacenav_perception.nets.hazard_net import HFlipAveraged
    out = tmp_path / 'tta' / 'hazard.ts'
    result = export_checkpoint(tmp_path / 'run' / 'best.pt', out, ('ts', 'onnx'), tta='hflip',
                               export_command='x')
    assert not result['failed'], result['failed']
    assert json.loads((tmp_path / 'tta' / 'hazard.json').read_text())[
        'export']['test_time_augmentation'] == 'hflip'
    model, _ = load_checkpoint_model(tmp_path / 'run' / 'best.pt')
    x = torch.rand(1, 3, 32, 64)
    with torch.inference_mode():
        plain = model(x)
        want = 0.5 * (plain + model(x.flip(3)).flip(3))
        assert torch.allclose(HFlipAveraged(model)(x), want, atol=1e-5)
        assert torch.allclose(torch.jit.load(str(out))(x), want, atol=1e-5)
        assert not torch.allclose(plain, want, atol=1e-5)
    import onnxruntime as ort
    sess = ort.InferenceSession(str(tmp_path / 'tta' / 'hazard.onnx'),
                                providers=['CPUExecutionProvider'])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert np.allclose(got, want.numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="'d4' applies to centroid"):
        export_checkpoint(tmp_path / 'run' / 'best.pt', tmp_path / 'y.ts', ('ts',), tta='d4')
    assert not (tmp_path / 'y.ts').exists()
    # --input-hw: the same weights exported for another input size; the manifest says both
    small = tmp_path / 'small' / 'hazard.ts'
    assert cli_main(['export', '--checkpoint', str(tmp_path / 'run' / 'best.pt'), '--out',
                     str(small), '--formats', 'ts,onnx', '--input-hw', '48', '96']) == 0
    manifest = json.loads((tmp_path / 'small' / 'hazard.json').read_text())
    assert (manifest['input']['height'], manifest['input']['width']) == (48, 96)
    assert manifest['training']['input_hw'] == [32, 64]
    # the manifest records the command that made it: the arguments given to the CLI
    assert manifest['export_command'] == (f"spacenav export --checkpoint {tmp_path / 'run' / 'best.pt'}"
                                          f" --out {small} --formats ts,onnx --input-hw 48 96")
    sess = ort.InferenceSession(str(tmp_path / 'small' / 'hazard.onnx'),
                                providers=['CPUExecutionProvider'])
    x = torch.rand(1, 3, 48, 96)
    with torch.inference_mode():
        np.testing.assert_allclose(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0],
                                   model(x).numpy(), atol=1e-4)
    assert cli_main(['export', '--checkpoint', str(tmp_path / 'run' / 'best.pt'), '--out',
                     str(tmp_path / 'z.ts'), '--input-hw', '0', '96']) == 2
    assert not (tmp_path / 'z.ts').exists()


def test_luma_segmentation_model_is_trained_exported_and_served_on_luma(tmp_path):
    """--color luma: the dataset feeds BT.601 luma in all three channels and the manifest says
    so; the runtime then gives a colour frame the luma in every channel. Served through the
    analytic ThresholdSegmenter (class = dominant channel), whose answer shows what it saw."""
    import cv2
    from spacenav_perception.core.engine import InferenceEngine
    from spacenav_perception.core.segmentation_predictor import SegmentationPredictor
    from spacenav_perception.nets.reference import expected_classes, export_reference_model
    data = make_lunar_set(tmp_path / 'data', n=3)
    task = SegmentationTask(data, data, 'hazardnet', input_hw=(32, 64), color='luma')
    train_ds, val_ds = task.datasets()
    for ds in (train_ds, val_ds):
        x = ds[0]['image']
        assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])
    Trainer(task, TrainConfig(out=str(tmp_path / 'run'), epochs=1, batch_size=3, threads=1)).fit()
    export_checkpoint(tmp_path / 'run' / 'best.pt', tmp_path / 'hazard.ts', ('ts',),
                      export_command='x')
    assert json.loads((tmp_path / 'hazard.json').read_text())['input']['color'] == 'luma'
    with pytest.raises(ValueError, match='unknown color mode'):
        SegmentationTask(data, data, 'hazardnet', color='hsv')
    ref = export_reference_model('segmentation', tmp_path / 'ref', 48, 64)
    rgb = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    as_rgb = SegmentationPredictor(InferenceEngine(ref), compute_safe_site=False,
                                   min_hazard_region_px=0)
    np.testing.assert_array_equal(as_rgb.predict(rgb, 'rgb8').classes,
                                  expected_classes(rgb / 255.0))
    manifest = json.loads(ref.with_suffix('.json').read_text())
    manifest['input']['color'] = 'luma'
    ref.with_suffix('.json').write_text(json.dumps(manifest))
    as_luma = SegmentationPredictor(InferenceEngine(ref), compute_safe_site=False,
                                   min_hazard_region_px=0)
    luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    want = expected_classes(np.repeat(luma[:, :, None], 3, 2) / 255.0)
    assert set(np.unique(want)) == {0, 1}         # equal channels: ground or the first rock class
    np.testing.assert_array_equal(as_luma.predict(rgb, 'rgb8').classes, want)
    np.testing.assert_array_equal(as_luma.predict(rgb[..., ::-1].copy(), 'bgr8').classes, want)


def test_eval_perturb_scores_the_perturbed_frames(tmp_path, capsys):
    """`spacenav eval segmentation --perturb NAME`: the confusion matrix is that of the model's
    answers on the perturbed frames (analytic model, so the expected matrix is computed here)."""
    from spacenav_perception.evaluation.perturbations import perturb
    from spacenav_perception.nets.reference import expected_classes, export_reference_model
    from spacenav_perception.training.segmentation_task import list_samples, read_sample
    data = make_lunar_set(tmp_path / 'data', n=3)
    ref = export_reference_model('segmentation', tmp_path / 'ref', 48, 64)
    matrices = {}
    for name in ('none', 'gray', 'warm', 'gain2.5'):
        assert cli_main(['eval', 'segmentation', '--data', str(data), '--model', str(ref),
                         '--json', '--perturb', name, '--min-hazard-region-px', '0']) == 0
        r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert r['perturbation'] == name and r['min_hazard_region_px'] == 0
        assert r['flip_average'] is True and r['upsampling'] == 'bilinear'    # the node's
        cm = np.zeros((4, 4), np.int64)
        for i, sample in enumerate(list_samples(data)):
            img, truth = read_sample(sample)
            pred = expected_classes(perturb(img, name, i) / 255.0)
            np.add.at(cm, (truth.reshape(-1), pred.reshape(-1)), 1)
        np.testing.assert_array_equal(r['confusion_matrix'], cm)
        matrices[name] = cm
    assert len({m.tobytes() for m in matrices.values()}) == 4      # each changed the answers
    # the model is the frames' size and pixel-wise: the post-processing options change nothing
    # here but are passed on and reported
    assert cli_main(['eval', 'segmentation', '--data', str(data), '--model', str(ref), '--json',
                     '--min-hazard-region-px', '0', '--no-flip-average',
                     '--upsampling', 'nearest']) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r['flip_average'] is False and r['upsampling'] == 'nearest'
    np.testing.assert_array_equal(r['confusion_matrix'], matrices['none'])


def test_eval_segmentation_breaks_the_scores_down_by_reflectance_law(tmp_path, capsys):
    """With a meta.csv `reflectance` column (synth lunar --reflectance varied) the evaluation
    adds one confusion matrix per law family; frames missing from meta.csv count only overall."""
    from spacenav_perception.nets.reference import expected_classes, export_reference_model
    from spacenav_perception.training.segmentation_task import list_samples, read_sample, scores
    data = make_lunar_set(tmp_path / 'data', n=4, seed=3)
    ref = export_reference_model('segmentation', tmp_path / 'ref', 48, 64)
    laws = {'render0001.png': 'hapke w=0.300 xi=-0.200 B0=0.500 h=0.050',
            'render0002.png': 'mcewen', 'render0003.png': 'hapke w=0.100 xi=0.000 B0=0.000 h=0.100'}
    with open(data / 'meta.csv', 'w') as fh:
        fh.write('image_name,seed,reflectance\n')
        fh.writelines(f'{k},1,{v}\n' for k, v in laws.items())
    assert cli_main(['eval', 'segmentation', '--data', str(data), '--model', str(ref), '--json',
                     '--min-hazard-region-px', '0']) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    want = {}
    for sample in list_samples(data):
        law = laws.get(sample.image.name, '').split(' ')[0]
        if not law:
            continue
        img, truth = read_sample(sample)
        cm = want.setdefault(law, np.zeros((4, 4), np.int64))
        np.add.at(cm, (truth.reshape(-1), expected_classes(img / 255.0).reshape(-1)), 1)
    assert r['n'] == 4
    assert [(b['reflectance'], b['n']) for b in r['by_reflectance']] == [('hapke', 2), ('mcewen', 1)]
    for b in r['by_reflectance']:
        s = scores(want[b['reflectance']])
        assert b['miou'] == pytest.approx(s['miou'])
        assert b['iou'] == pytest.approx(s['iou'], nan_ok=True)
    assert cli_main(['eval', 'segmentation', '--data', str(data), '--model', str(ref)]) == 0
    assert 'reflectance hapke        : mIoU' in capsys.readouterr().out


def test_export_input_size_is_checked_by_running_the_network():
    """--input-hw is accepted where the network runs and keeps one logit per input pixel,
    whatever the arch: hazardnet_sp takes 36x52 (not multiples of 16), the report U-Net
    (four 2x poolings) does not keep 40x72 and the refusal says what it returned."""
    from spacenav_perception.export import _check_input_size
    from spacenav_perception.training.segmentation_task import build_model
    cfg = {'input': {'channels': 3}, 'output': 'logits_nchw'}
    sp = build_model('hazardnet_sp').eval()
    _check_input_size(sp, dict(cfg, arch='hazardnet_sp'), 36, 52)
    with torch.inference_mode():
        assert tuple(sp(torch.zeros(1, 3, 36, 52)).shape[-2:]) == (36, 52)
    unet = build_model('unet').eval()
    _check_input_size(unet, dict(cfg, arch='unet'), 48, 64)
    with pytest.raises(ValueError, match=r'40x72: the unet network (returns|cannot run)'):
        _check_input_size(unet, dict(cfg, arch='unet'), 40, 72)
    with pytest.raises(ValueError, match='must be positive'):
        _check_input_size(sp, dict(cfg, arch='hazardnet_sp'), 0, 52)
