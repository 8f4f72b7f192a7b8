"""`spacenav demo` end to end in a reduced size (3 asteroid + 2 lunar small frames) with the
analytic reference models, so CI catches a broken demo; and the missing-model message."""
import json

import pytest

from bag_fixtures import spacenav
from spacenav_perception.nets.reference import export_reference_model


@pytest.fixture(scope='module')
def reference_models(tmp_path_factory):
    out = tmp_path_factory.mktemp('models')
    return (export_reference_model('centroid', out, 128, 128),
            export_reference_model('segmentation', out, 64, 96))


def test_demo_small_end_to_end(tmp_path, reference_models):
    centroid, hazard = reference_models
    out = tmp_path / 'demo_out'
    result = spacenav('demo', '--n-asteroid', 3, '--n-lunar', 2, '--asteroid-size', 128,
                      '--lunar-size', '96x64', '--rate-hz', 5, '--queue-depth', 8, '--out', out,
                      '--model-centroid', centroid, '--model-hazard', hazard,
                      '--no-progress', timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = result.stdout
    assert 'centroid error mean / median / p95 [px]' in text
    assert 'segmentation mIoU' in text and 'latency p50 / p95 [ms]' in text
    for name in ('centroid_contact_sheet.png', 'hazard_overlays.png',
                 'centroid_error_hist.png'):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
        assert str(out / name) in text
    summary = json.loads((out / 'demo_summary.json').read_text())
    a, lunar = summary['results']['asteroid'], summary['results']['lunar']
    assert a['frames_published'] == 3 and lunar['frames_published'] == 2
    c = a['centroid']
    # The reference model answers every frame: every truth is matched, none missed (the deep
    # queue keeps a stall of the shared CPU from dropping a frame, which depth 1 would).
    assert c['matched'] == c['truth_received'] and c['missed'] == 0 and c['matched'] >= 1
    assert c['error_px_mean'] is not None and c['error_px_mean'] >= 0
    h = lunar['hazard']
    assert h['matched'] == 2 and h['missed'] == 0
    assert 0.0 <= lunar['segmentation']['miou'] <= 1.0
    assert a['latency']['centroid']['n'] == 3
    # Bags are real rosbag2 bags.
    assert (out / 'bags' / 'asteroid' / 'metadata.yaml').is_file()
    assert (out / 'bags' / 'lunar' / 'metadata.yaml').is_file()


def test_demo_missing_model_says_which_and_how(tmp_path):
    result = spacenav('demo', '--quick', '--out', tmp_path / 'demo_out', '--n-lunar', 0,
                      '--model-centroid', tmp_path / 'nope' / 'centroid.ts', '--no-progress')
    assert result.returncode == 2
    assert 'centroid model' in result.stderr and 'nope' in result.stderr
    assert '--model-centroid' in result.stderr and 'spacenav train' in result.stderr
    assert not (tmp_path / 'demo_out' / 'data').exists()    # failed before rendering


@pytest.mark.parametrize('args, message', [
    (('--queue-depth', 0), '--queue-depth must be at least 1'),
    (('--lunar-rate-hz', 0), '--lunar-rate-hz must be above 0'),
    (('--rate-hz', -1), '--rate-hz must be above 0'),
    (('--lunar-size', '720by480'), 'is not WIDTHxHEIGHT'),
])
def test_demo_bad_arguments_fail_before_rendering(tmp_path, args, message):
    result = spacenav('demo', '--quick', '--out', tmp_path / 'demo_out', *args, '--no-progress')
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / 'demo_out').exists()


def test_table_says_when_the_miou_covers_fewer_frames_than_the_hazard_mask():
    from spacenav_perception.demo import format_table
    def lunar(seg_matched):
        return {'lunar': {
            'frames_published': 8,
            'hazard': {'matched': 8, 'missed': 0, 'iou_pooled': 0.8, 'iou_mean_per_frame': 0.7},
            'segmentation': {'matched': seg_matched, 'miou': 0.84,
                             'per_class_iou': {'ground': 0.98, 'small_rock': 0.5}},
            'latency': {'hazard': {'answers_per_s': 4.0, 'p50_ms': 100.0, 'p95_ms': 120.0}}}}
    same = format_table(lunar(8))
    assert 'segmentation mIoU' in same and 'arrived' not in same
    fewer = format_table(lunar(7))
    assert '0.840 (over the 7 frames whose /segmentation arrived)' in fewer
