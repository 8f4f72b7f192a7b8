"""`spacenav bag make` writes real rosbag2 bags; read back by independent readers.

MCAP bags are read with the `mcap` + `mcap_ros2` packages (not rosbags, which wrote them),
SQLite3 bags with python's sqlite3 module (+ rosbags only to deserialise CDR). Content is
compared with the source PNGs / labels.csv byte for byte.
"""
import math
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from mcap_ros2.reader import read_ros2_messages

from bag_fixtures import T0_SEC, make_asteroid_dataset, make_bag, make_lunar_dataset, spacenav
from spacenav_perception.bags import frame_sources as fs

RATE_HZ = 10.0


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def expected_k(width, height, fov_deg):
    f = (width / 2) / math.tan(math.radians(fov_deg) / 2)
    return [f, 0.0, (width - 1) / 2, 0.0, f, (height - 1) / 2, 0.0, 0.0, 1.0]


def read_mcap(bag: Path) -> dict:
    """topic -> [(log_time, msg)] read with the independent mcap_ros2 reader."""
    files = list(bag.glob('*.mcap'))
    assert len(files) == 1, files
    out = defaultdict(list)
    for m in read_ros2_messages(str(files[0])):
        out[m.channel.topic].append((m.log_time_ns, m.ros_msg))
    return out


def test_asteroid_mcap_read_back_by_mcap_ros2(tmp_path):
    rows = make_asteroid_dataset(tmp_path / 'data', n=4, width=40, height=32)
    bag = tmp_path / 'bag'
    result = make_bag(tmp_path / 'data', bag, '--rate-hz', RATE_HZ, '--frame-id', 'cam')
    assert 'wrote' in result.stdout and '4 frames' in result.stdout
    assert not (tmp_path / 'bag.partial').exists()

    meta = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert meta['version'] == 9 and meta['storage_identifier'] == 'mcap'
    counts = {t['topic_metadata']['name']: t['message_count']
              for t in meta['topics_with_message_count']}
    assert counts == {'/camera/image_raw': 4, '/camera/camera_info': 4, '/centroid_truth': 4}
    assert meta['message_count'] == 12
    assert (bag / meta['relative_file_paths'][0]).is_file()

    topics = read_mcap(bag)
    images, infos = topics['/camera/image_raw'], topics['/camera/camera_info']
    truths = {stamp_ns(m): m for _, m in topics['/centroid_truth']}
    for i, (name, x, y) in enumerate(rows):
        t = T0_SEC * 1_000_000_000 + round(i * 1e9 / RATE_HZ)
        log_time, img = images[i]
        assert log_time == t and stamp_ns(img) == t
        assert img.header.frame_id == 'cam'
        png = cv2.imread(str(tmp_path / 'data' / 'images' / name), cv2.IMREAD_UNCHANGED)
        assert img.encoding == 'mono8' and (img.height, img.width, img.step) == (32, 40, 40)
        assert bytes(img.data) == png.tobytes()
        _, info = infos[i]
        assert stamp_ns(info) == t and info.header.frame_id == 'cam'
        assert (info.width, info.height) == (40, 32)
        np.testing.assert_allclose(info.k, expected_k(40, 32, 5.5), rtol=1e-12)
        assert info.distortion_model == 'plumb_bob' and list(info.d) == [0.0] * 5
        truth = truths[t]
        assert (truth.point.x, truth.point.y) == (x, y)
        assert truth.header.frame_id == 'cam'


def test_lunar_mcap_read_back_with_masks_and_meta_fov(tmp_path):
    frames = make_lunar_dataset(tmp_path / 'data', n=3, width=24, height=16, hfov_deg=62.5)
    bag = tmp_path / 'bag'
    make_bag(tmp_path / 'data', bag)
    topics = read_mcap(bag)
    assert set(topics) == {'/camera/image_raw', '/camera/camera_info', '/hazard_truth',
                           '/segmentation_truth'}
    for i, (rgb, classes) in enumerate(frames):
        stamps = {topic: stamp_ns(msgs[i][1]) for topic, msgs in topics.items()}
        assert len(set(stamps.values())) == 1, stamps
        img = topics['/camera/image_raw'][i][1]
        assert img.encoding == 'rgb8' and bytes(img.data) == rgb.tobytes()
        seg = topics['/segmentation_truth'][i][1]
        assert seg.encoding == 'mono8' and bytes(seg.data) == classes.tobytes()
        hazard = topics['/hazard_truth'][i][1]
        expected = np.where((classes == 1) | (classes == 2), 255, 0).astype(np.uint8)
        assert bytes(hazard.data) == expected.tobytes()
        info = topics['/camera/camera_info'][i][1]
        np.testing.assert_allclose(info.k, expected_k(24, 16, 62.5), rtol=1e-12)


def test_sqlite3_bag_read_with_sqlite3_module(tmp_path):
    rows = make_asteroid_dataset(tmp_path / 'data', n=3)
    bag = tmp_path / 'bag'
    make_bag(tmp_path / 'data', bag, '--storage', 'sqlite3', '--fov-deg', 10)
    meta = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert meta['storage_identifier'] == 'sqlite3'
    db = bag / meta['relative_file_paths'][0]
    assert db.suffix == '.db3'
    typestore = fs.jazzy_typestore()
    with sqlite3.connect(db) as conn:
        topics = {tid: (name, typ) for tid, name, typ in
                  conn.execute('SELECT id, name, type FROM topics')}
        messages = conn.execute('SELECT topic_id, timestamp, data FROM messages '
                                'ORDER BY timestamp, id').fetchall()
    by_topic = defaultdict(list)
    for tid, timestamp, data in messages:
        name, typ = topics[tid]
        by_topic[name].append((timestamp, typestore.deserialize_cdr(data, typ)))
    assert [len(by_topic[t]) for t in ('/camera/image_raw', '/camera/camera_info',
                                       '/centroid_truth')] == [3, 3, 3]
    for i, (name, x, y) in enumerate(rows):
        t = T0_SEC * 1_000_000_000 + round(i * 1e9 / RATE_HZ)
        ts, img = by_topic['/camera/image_raw'][i]
        png = cv2.imread(str(tmp_path / 'data' / 'images' / name), cv2.IMREAD_UNCHANGED)
        assert ts == t and stamp_ns(img) == t and img.data.tobytes() == png.tobytes()
        _, info = by_topic['/camera/camera_info'][i]
        np.testing.assert_allclose(info.k, expected_k(40, 32, 10.0), rtol=1e-12)
        _, truth = by_topic['/centroid_truth'][i]
        assert stamp_ns(truth) == t and (truth.point.x, truth.point.y) == (x, y)


def test_frame_sources_agree_for_bag_and_folder(tmp_path):
    make_asteroid_dataset(tmp_path / 'data', n=5)
    make_bag(tmp_path / 'data', tmp_path / 'bag')
    from_bag = list(fs.open_frames(tmp_path / 'bag', start_index=1, end_index=3))
    from_dir = list(fs.open_frames(tmp_path / 'data', start_index=1, end_index=3,
                                   t0_ns=T0_SEC * 10**9))
    assert [f.index for f in from_bag] == [f.index for f in from_dir] == [1, 2, 3]
    for a, b in zip(from_bag, from_dir):
        assert a.stamp_ns == b.stamp_ns
        assert np.array_equal(a.image, b.image) and a.encoding == b.encoding == 'mono8'
        assert a.centroid == b.centroid and a.camera == b.camera


def test_missing_image_skipped_and_summarised(tmp_path):
    make_asteroid_dataset(tmp_path / 'data', n=5, missing=(1,), nan_rows=(3,),
                          bad_rows=['asteroid_000009.png,not_a_number,3'])
    result = make_bag(tmp_path / 'data', tmp_path / 'bag')
    assert result.returncode == 0
    assert '3 frames' in result.stdout
    report = result.stdout + result.stderr
    assert 'missing_image' in report and 'asteroid_000001.png' in report
    assert 'not_a_number' in report and 'asteroid_000003.png' in report
    frames = list(fs.open_frames(tmp_path / 'bag'))
    assert [f.name for f in frames] == ['frame_000000', 'frame_000001', 'frame_000002']


def test_strict_stops_at_first_problem(tmp_path):
    make_asteroid_dataset(tmp_path / 'data', n=4, missing=(2,))
    result = make_bag(tmp_path / 'data', tmp_path / 'bag', '--strict', check=False)
    assert result.returncode != 0
    assert 'asteroid_000002.png' in result.stderr
    assert not (tmp_path / 'bag').exists() and not (tmp_path / 'bag.partial').exists()


def test_existing_bag_is_not_overwritten(tmp_path):
    make_asteroid_dataset(tmp_path / 'data', n=2)
    make_bag(tmp_path / 'data', tmp_path / 'bag')
    result = make_bag(tmp_path / 'data', tmp_path / 'bag', check=False)
    assert result.returncode != 0 and 'exists' in result.stderr
    make_bag(tmp_path / 'data', tmp_path / 'bag', '--overwrite')


def test_killed_conversion_leaves_no_complete_looking_bag(tmp_path):
    # Large enough that the conversion is still running when it is killed.
    make_asteroid_dataset(tmp_path / 'data', n=400, width=256, height=256)
    bag = tmp_path / 'bag'
    stage = tmp_path / 'bag.partial' / 'bag'
    proc = subprocess.Popen([sys.executable, '-m', 'spacenav_perception.cli', 'bag', 'make',
                             '--data', str(tmp_path / 'data'), '--out', str(bag),
                             '--no-progress'], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            files = list(stage.glob('*.mcap')) if stage.exists() else []
            if files and files[0].stat().st_size > 2_000_000:
                break
            assert proc.poll() is None, 'conversion ended before it could be interrupted'
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert not bag.exists()
    assert not (stage / 'metadata.yaml').exists()
    from rosbags.rosbag2 import Reader
    with pytest.raises(Exception):
        with Reader(stage):
            pass
    # A reader over the leftover reports it clearly instead of crashing.
    problems = fs.make_problems(False)
    assert list(fs.iter_bag_frames(stage, problems=problems)) == []
    assert 'metadata.yaml' in problems.summary()
    # The next run removes the stale stage and completes.
    make_bag(tmp_path / 'data', bag, '--end-index', 4)
    assert (bag / 'metadata.yaml').is_file() and not (tmp_path / 'bag.partial').exists()


def test_truncated_bag_reported_not_crashing(tmp_path):
    make_asteroid_dataset(tmp_path / 'data', n=30, width=64, height=64)
    bag = tmp_path / 'bag'
    make_bag(tmp_path / 'data', bag)
    mcap_file = next(bag.glob('*.mcap'))
    data = mcap_file.read_bytes()
    mcap_file.write_bytes(data[: len(data) // 2])
    problems = fs.make_problems(False)
    frames = list(fs.iter_bag_frames(bag, problems=problems))
    assert len(frames) < 30
    assert problems.by_kind('truncated_bag') or problems.by_kind('bad_bag')
    strict = fs.make_problems(True)
    with pytest.raises(Exception):
        list(fs.iter_bag_frames(bag, problems=strict))


def test_bag_info_command(tmp_path):
    make_lunar_dataset(tmp_path / 'data', n=2)
    make_bag(tmp_path / 'data', tmp_path / 'bag')
    result = spacenav('bag', 'info', tmp_path / 'bag', check=True)
    assert '/segmentation_truth' in result.stdout and 'sensor_msgs/msg/Image' in result.stdout


def test_lunar_problems_missing_mask_and_unknown_colour(tmp_path):
    make_lunar_dataset(tmp_path / 'data', n=3)
    (tmp_path / 'data' / 'images' / 'clean' / 'clean0002.png').unlink()
    mask_path = tmp_path / 'data' / 'images' / 'clean' / 'clean0003.png'
    mask = cv2.imread(str(mask_path))
    mask[0, 0] = (0, 120, 120)                  # BGR: G and R equally strong: no class colour
    cv2.imwrite(str(mask_path), mask)
    result = make_bag(tmp_path / 'data', tmp_path / 'bag')
    assert '2 frames' in result.stdout
    assert 'missing_mask' in result.stdout and 'unknown_mask_colour' in result.stdout
    result = make_bag(tmp_path / 'data', tmp_path / 'bag2', '--strict', check=False)
    assert result.returncode != 0 and 'missing_mask' in result.stderr


@pytest.mark.parametrize('codec', ['png', 'jpeg'])
def test_compressed_bag_read_back_by_mcap_ros2_and_by_the_frame_reader(tmp_path, codec):
    """--image-format png|jpeg: frames as CompressedImage on /camera/image_raw/compressed (as
    image_transport records them), decoded by OpenCV from the independently read bytes;
    the project's reader finds that topic itself and gives the same frames."""
    rows = make_asteroid_dataset(tmp_path / 'data', n=3, width=48, height=40)
    renders = make_lunar_dataset(tmp_path / 'lunar', n=2)
    make_bag(tmp_path / 'data', tmp_path / 'bag', '--image-format', codec)
    make_bag(tmp_path / 'lunar', tmp_path / 'lbag', '--image-format', codec)
    by_topic = read_mcap(tmp_path / 'bag')
    assert '/camera/image_raw' not in by_topic and len(by_topic['/camera/image_raw/compressed']) == 3
    frames = list(fs.open_frames(tmp_path / 'bag'))
    assert len(frames) == 3 and fs.bag_frame_count(tmp_path / 'bag') == 3
    for i, ((t, msg), frame) in enumerate(zip(by_topic['/camera/image_raw/compressed'], frames)):
        assert msg.format == f'mono8; {codec} compressed '
        png = cv2.imread(str(tmp_path / 'data' / 'images' / rows[i][0]), cv2.IMREAD_UNCHANGED)
        decoded = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_UNCHANGED)
        assert frame.encoding == 'mono8' and np.array_equal(frame.image, decoded)
        assert frame.centroid == (rows[i][1], rows[i][2]) and frame.stamp_ns == t
        if codec == 'png':
            assert np.array_equal(decoded, png)
        else:
            assert decoded.shape == png.shape
    lunar = list(fs.open_frames(tmp_path / 'lbag'))
    assert len(lunar) == 2
    for frame, (rgb, classes) in zip(lunar, renders):
        assert frame.encoding == 'bgr8'                   # as OpenCV decodes colour
        if codec == 'png':
            assert np.array_equal(frame.image[..., ::-1], rgb)
        assert np.array_equal(frame.segmentation, classes)   # truth masks stay raw, exact


def test_bag_image_topic_prefers_raw_frames():
    assert fs.bag_image_topic({'/cam/image', '/cam/image/compressed'}, '/cam/image') == '/cam/image'
    assert fs.bag_image_topic({'/cam/image/compressed'}, '/cam/image') == '/cam/image/compressed'
    assert fs.bag_image_topic({'/other'}, '/cam/image') == '/cam/image'


def test_bad_image_format_is_refused(tmp_path):
    make_asteroid_dataset(tmp_path / 'data', n=1)
    result = make_bag(tmp_path / 'data', tmp_path / 'bag', '--image-format', 'gif', check=False)
    assert result.returncode == 2 and 'invalid choice' in result.stderr
