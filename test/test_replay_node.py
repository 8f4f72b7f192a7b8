"""ReplayNode over real DDS: every frame once, in order, with the promised stamps; loop; end.

A probe node subscribes (reliable) to every topic the replay publishes; the replay waits for
its subscriptions (wait_for_subscribers) before the first frame, so nothing is lost to
discovery. No timing assertions: 'now' stamps are only checked to increase and to lie near the
wall clock (within a minute).
"""
import subprocess
import sys
import time

import numpy as np
import pytest
from geometry_msgs.msg import PointStamped
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image

from bag_fixtures import T0_SEC, make_asteroid_dataset, make_bag, make_lunar_dataset
from ros_helpers import TopicRecorder, init_rclpy, make_node, reliable_qos, ros_graph, wait_for

RATE_HZ = 10.0


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def bag_stamp(i) -> int:
    return T0_SEC * 1_000_000_000 + round(i * 1e9 / RATE_HZ)


@pytest.fixture(scope='module')
def asteroid(tmp_path_factory):
    root = tmp_path_factory.mktemp('replay')
    rows = make_asteroid_dataset(root / 'data', n=6, width=20, height=16)
    make_bag(root / 'data', root / 'bag', '--rate-hz', RATE_HZ)
    return root, rows


def run_replay(params, topics, count, timeout=60.0, expect_done=True):
    """Start a ReplayNode with `params`, record `topics` until `count` images arrived."""
    init_rclpy()
    from spacenav_perception.nodes.replay_node import ReplayNode
    probe = make_node('replay_probe')
    recorders = {name: TopicRecorder(probe, typ, topic, reliable_qos(200))
                 for name, (typ, topic) in topics.items()}
    params = dict({'rate_hz': 50.0, 'wait_for_subscribers': 1,
                   'wait_for_truth_subscribers': 1, 'wait_timeout_s': 30.0}, **params)
    node = ReplayNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    with ros_graph(node, probe):
        recorders['image'].wait(count, timeout)
        if expect_done:
            wait_for(node.done.is_set, timeout, what='replay done')
            published = node.published
            time.sleep(0.3)                      # nothing more may come after done
        else:
            published = None
        out = {name: rec.messages for name, rec in recorders.items()}
        state = {'done': node.done.is_set(), 'published': published, 'passes': node.passes}
    return out, state


ASTEROID_TOPICS = {'image': (Image, '/camera/image_raw'),
                   'info': (CameraInfo, '/camera/camera_info'),
                   'truth': (PointStamped, '/centroid_truth')}


def test_recorded_stamps_every_frame_once_in_order(asteroid):
    root, rows = asteroid
    out, state = run_replay({'path': str(root / 'bag'), 'stamp_mode': 'recorded'},
                            ASTEROID_TOPICS, 6)
    assert state['done'] and state['published'] == 6 and state['passes'] == 1
    assert [stamp_ns(m) for m in out['image']] == [bag_stamp(i) for i in range(6)]
    assert [stamp_ns(m) for m in out['info']] == [bag_stamp(i) for i in range(6)]
    truth = {stamp_ns(m): (m.point.x, m.point.y) for m in out['truth']}
    assert truth == {bag_stamp(i): (x, y) for i, (_, x, y) in enumerate(rows)}
    for i, msg in enumerate(out['image']):
        png = __import__('cv2').imread(str(root / 'data' / 'images' / rows[i][0]), 0)
        assert bytes(msg.data) == png.tobytes() and msg.encoding == 'mono8'


def test_now_stamps_increase_and_are_shared(asteroid):
    root, _ = asteroid
    before = time.time_ns()
    out, state = run_replay({'path': str(root / 'bag'), 'stamp_mode': 'now'},
                            ASTEROID_TOPICS, 6)
    after = time.time_ns()
    stamps = [stamp_ns(m) for m in out['image']]
    assert len(stamps) == 6 and all(b > a for a, b in zip(stamps, stamps[1:]))
    assert before - 60e9 < stamps[0] and stamps[-1] < after + 60e9
    assert {stamp_ns(m) for m in out['info']} == set(stamps)
    assert {stamp_ns(m) for m in out['truth']} == set(stamps)


def test_loop_wraps_around(asteroid):
    root, _ = asteroid
    out, state = run_replay({'path': str(root / 'bag'), 'stamp_mode': 'recorded',
                             'loop': True, 'start_index': 1, 'end_index': 3},
                            ASTEROID_TOPICS, 7, expect_done=False)
    stamps = [stamp_ns(m) for m in out['image']][:7]
    cycle = [bag_stamp(i) for i in (1, 2, 3)]
    assert stamps == (cycle * 3)[:7]
    assert not state['done'] and state['passes'] >= 2


def test_recorded_timing_with_rate_factor(asteroid):
    root, _ = asteroid
    out, state = run_replay({'path': str(root / 'bag'), 'stamp_mode': 'recorded',
                             'rate_hz': 0.0, 'rate': 4.0, 'end_index': 2}, ASTEROID_TOPICS, 3)
    assert [stamp_ns(m) for m in out['image']] == [bag_stamp(i) for i in range(3)]
    assert state['published'] == 3


def test_asteroid_folder_without_bag(asteroid):
    root, rows = asteroid
    out, state = run_replay({'path': str(root / 'data'), 'stamp_mode': 'recorded',
                             'fov_deg': 8.0, 'frame_id': 'cam'}, ASTEROID_TOPICS, 6)
    assert state['published'] == 6
    assert [stamp_ns(m) for m in out['image']] == [round(i * 1e8) for i in range(6)]
    assert all(m.header.frame_id == 'cam' for m in out['image'])
    f = (20 / 2) / np.tan(np.radians(8.0) / 2)
    np.testing.assert_allclose(out['info'][0].k, [f, 0, 9.5, 0, f, 7.5, 0, 0, 1])
    assert sorted((m.point.x, m.point.y) for m in out['truth']) == \
        sorted((x, y) for _, x, y in rows)


def test_lunar_folder_publishes_masks(tmp_path):
    frames = make_lunar_dataset(tmp_path / 'lunar', n=3)
    topics = {'image': (Image, '/camera/image_raw'), 'hazard': (Image, '/hazard_truth'),
              'segmentation': (Image, '/segmentation_truth')}
    out, state = run_replay({'path': str(tmp_path / 'lunar'), 'stamp_mode': 'now'}, topics, 3)
    assert state['published'] == 3
    by_stamp = {stamp_ns(m): m for m in out['segmentation']}
    hz = {stamp_ns(m): m for m in out['hazard']}
    for (rgb, classes), img in zip(frames, out['image']):
        assert img.encoding == 'rgb8' and bytes(img.data) == rgb.tobytes()
        assert bytes(by_stamp[stamp_ns(img)].data) == classes.tobytes()
        expected = np.where(np.isin(classes, (1, 2)), 255, 0).astype(np.uint8)
        assert bytes(hz[stamp_ns(img)].data) == expected.tobytes()


def test_console_script_exits_at_the_end(asteroid):
    root, _ = asteroid
    result = subprocess.run(
        [sys.executable, '-m', 'spacenav_perception.nodes.replay_node', '--ros-args',
         '-p', f'path:={root / "bag"}', '-p', 'rate_hz:=100.0'],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    log = result.stdout + result.stderr
    assert 'replay finished: 6 frames' in log and 'stopping' in log


def test_bad_path_is_a_clear_startup_error(tmp_path):
    result = subprocess.run(
        [sys.executable, '-m', 'spacenav_perception.nodes.replay_node', '--ros-args',
         '-p', f'path:={tmp_path / "nope"}'], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert 'does not exist' in result.stdout + result.stderr


def test_replay_graph_with_exit_when_done_writes_the_evaluation(asteroid, tmp_path):
    """`spacenav run --config replay bag:=...` starts replay + centroid + eval nodes and exits
    at the end of the bag with the eval report written (reference model: known answers)."""
    import json
    from bag_fixtures import spacenav
    from spacenav_perception.nets.reference import export_reference_model
    root, rows = asteroid
    model = export_reference_model('centroid', tmp_path / 'model', 16, 20)
    result = spacenav('run', '--config', 'replay', f'bag:={root / "bag"}', 'use_hazard:=false',
                      'wait_for_subscribers:=2', 'rate_hz:=20.0', 'done_delay_s:=1.0',
                      f'centroid_model:={model}', f'eval_output_dir:={tmp_path / "eval"}',
                      '--exit-when-done', timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / 'eval' / 'report.json').read_text())
    c = report['centroid']
    assert c['truth_received'] == 6 and c['matched'] + c['missed'] == 6
    assert c['matched'] >= 1 and c['duplicates'] == 0
    assert (tmp_path / 'eval' / 'centroid_error_hist.png').is_file()


def test_compressed_bag_replays_as_raw_images(tmp_path):
    """A bag recorded with compressed frames (/camera/image_raw/compressed) replays as
    sensor_msgs/Image on /camera/image_raw, pixel for pixel (PNG is lossless)."""
    rows = make_asteroid_dataset(tmp_path / 'data', n=3, width=20, height=16)
    make_bag(tmp_path / 'data', tmp_path / 'bag', '--rate-hz', RATE_HZ, '--image-format', 'png')
    out, state = run_replay({'path': str(tmp_path / 'bag'), 'stamp_mode': 'recorded'},
                            ASTEROID_TOPICS, 3)
    assert state['done'] and state['published'] == 3
    assert [stamp_ns(m) for m in out['image']] == [bag_stamp(i) for i in range(3)]
    for i, msg in enumerate(out['image']):
        png = __import__('cv2').imread(str(tmp_path / 'data' / 'images' / rows[i][0]), 0)
        assert msg.encoding == 'mono8' and bytes(msg.data) == png.tobytes()
