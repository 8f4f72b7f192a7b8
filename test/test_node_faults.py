"""Reliability: bad frames, overload accounting, devices and broken models (real DDS).

Every bad frame is rejected with its reason (counter on /diagnostics, throttled warning) and
the node answers the next good frame correctly; start-up problems end the node with one clear
message and a non-zero exit code.
"""
import array
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PointStamped
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from ros_helpers import (TopicRecorder, init_rclpy, make_node, publish_until, reliable_qos,
                         ros_graph, wait_for)
from spacenav_perception.core import image_codec
from spacenav_perception.nets.reference import export_reference_model
from spacenav_perception.nodes.image_msgs import image_from_array

HEIGHT, WIDTH = 24, 32
MAX_PIXELS = 1000            # 24 x 32 = 768 passes, 40 x 32 = 1280 is too large
BIN = Path(sys.executable).parent
NO_GPU = not torch.cuda.is_available()


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp('models')
    export_reference_model('centroid', out, HEIGHT, WIDTH)
    export_reference_model('segmentation', out, HEIGHT, WIDTH)
    return out


@pytest.fixture(scope='module')
def graph(model_dir):
    init_rclpy()
    from spacenav_perception.nodes.centroid_node import CentroidNode
    node = CentroidNode(parameter_overrides=[
        Parameter('model_path', value=str(model_dir / 'reference_centroid.ts')),
        Parameter('image_topic', value='/faults/image'),
        Parameter('max_pixels', value=MAX_PIXELS),
        Parameter('qos_reliability', value='reliable'), Parameter('qos_depth', value=50)])
    probe = make_node()
    centroids = TopicRecorder(probe, PointStamped, '/centroid')
    diagnostics = TopicRecorder(probe, DiagnosticArray, '/diagnostics')
    pub = probe.create_publisher(Image, '/faults/image', reliable_qos(50))
    with ros_graph(node, probe):
        # One answered frame: both ends of the image topic have matched.
        publish_until(pub, good_frame(Time(sec=1))[0], lambda: centroids.messages)
        yield node, pub, centroids, diagnostics


def good_frame(stamp):
    img = np.zeros((HEIGHT, WIDTH), np.uint8)
    img[4:10, 6:16] = 200
    img[15:20, 20:30] = 100
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    w = img.astype(np.float64)
    return (image_from_array(img, 'mono8', stamp=stamp, frame_id='cam'),
            ((w * cols).sum() / w.sum(), (w * rows).sum() / w.sum()))


def raw_image(encoding='mono8', height=HEIGHT, width=WIDTH, step=WIDTH, data_len=None,
              is_bigendian=0, data=None, stamp=None):
    msg = Image(encoding=encoding, height=height, width=width, step=step,
                is_bigendian=is_bigendian)
    if stamp is not None:
        msg.header.stamp = stamp
    if data is None:
        data = bytes(step * height if data_len is None else data_len)
    msg.data = array.array('B', data)
    return msg


def float_image(value):
    img = np.full((HEIGHT, WIDTH), 0.5, np.float32)
    img[3, 5] = value
    return image_from_array(img, '32FC1')


BAD_FRAMES = {
    'unsupported_encoding': lambda: raw_image(encoding='nv21', step=2 * WIDTH),
    'odd_width': lambda: raw_image(encoding='uyvy', width=WIDTH - 1, step=2 * (WIDTH - 1)),
    'zero_size': lambda: raw_image(height=0, width=0, step=0),
    'step_too_small': lambda: raw_image(encoding='rgb8', step=WIDTH),
    'data_length': lambda: raw_image(data_len=WIDTH * HEIGHT - 1),
    'too_large': lambda: raw_image(height=40),
    'non_finite/nan': lambda: float_image(np.nan),
    'non_finite/inf': lambda: float_image(np.inf),
}


def diagnostic_values(diagnostics, node_name):
    """key -> value of the newest /diagnostics status of `node_name`, with its level."""
    for array_msg in reversed(diagnostics.messages):
        for status in array_msg.status:
            if status.name.startswith(node_name + ':'):
                values = {kv.key: kv.value for kv in status.values}
                values['__level__'] = status.level
                return values
    return {}


_stamps = iter(range(100, 10 ** 6))


def assert_next_good_frame_answered(pub, centroids):
    stamp = Time(sec=next(_stamps))
    msg, (x, y) = good_frame(stamp)
    answers = publish_until(pub, msg, lambda: [m for m in centroids.messages
                                               if m.header.stamp == stamp])
    assert answers[0].point.x == pytest.approx(x, abs=0.05)
    assert answers[0].point.y == pytest.approx(y, abs=0.05)


@pytest.mark.parametrize('case', list(BAD_FRAMES))
def test_bad_frame_rejected_and_node_carries_on(graph, case):
    node, pub, centroids, diagnostics = graph
    reason = case.split('/')[0]
    before = node.health.counters()['rejected'].get(reason, 0)
    publish_until(pub, BAD_FRAMES[case](),
                  lambda: node.health.counters()['rejected'].get(reason, 0) > before)
    count = node.health.counters()['rejected'][reason]
    diagnostics.clear()
    values = wait_for(lambda: (lambda v: v if int(v.get(f'rejected.{reason}', 0)) >= count
                               else None)(diagnostic_values(diagnostics, node.get_name())),
                      what=f'rejected.{reason} on /diagnostics')
    assert int(values['rejected_total']) >= count
    assert values['device'] == 'cpu' and values['sha256']
    assert node.health.counters()['errors'] == 0
    assert_next_good_frame_answered(pub, centroids)


def test_diagnostics_level_warns_on_rejections_then_recovers(graph):
    node, pub, centroids, diagnostics = graph
    diagnostics.clear()
    publish_until(pub, BAD_FRAMES['data_length'](),
                  lambda: any(s.level == DiagnosticStatus.WARN and 'rejected' in s.message
                              for a in diagnostics.messages for s in a.status),
                  timeout=30, period=0.3)
    # Without new problems the next periods are OK again.
    diagnostics.clear()
    wait_for(lambda: diagnostic_values(diagnostics, node.get_name()).get('__level__')
             == DiagnosticStatus.OK, what='an OK diagnostics status')


def test_no_target_publishes_nothing(graph):
    node, pub, centroids, _ = graph
    before = node.health.counters()['no_target']
    black = raw_image(stamp=Time(sec=424242))
    publish_until(pub, black, lambda: node.health.counters()['no_target'] > before)
    assert_next_good_frame_answered(pub, centroids)
    assert not [m for m in centroids.messages if m.header.stamp.sec == 424242]


def test_runtime_error_is_counted_and_survived(graph):
    """A per-frame failure (here: the predictor raises like a CUDA OOM would) is logged and
    counted, /diagnostics goes to ERROR, and the node answers again afterwards."""
    node, pub, centroids, diagnostics = graph
    predictor = node.predictor
    real_predict = predictor.predict
    calls = []

    def failing_predict(image, encoding):
        calls.append(1)
        raise RuntimeError('CUDA out of memory (simulated in the test)')

    before = node.health.counters()['errors']
    predictor.predict = failing_predict
    try:
        diagnostics.clear()
        publish_until(pub, good_frame(Time(sec=next(_stamps)))[0],
                      lambda: diagnostic_values(diagnostics, node.get_name()).get('__level__')
                      == DiagnosticStatus.ERROR, timeout=30, period=0.3)
    finally:
        predictor.predict = real_predict
    assert node.health.counters()['errors'] > before
    assert 'CUDA out of memory' in node.health.last_error
    assert_next_good_frame_answered(pub, centroids)


# ----------------------------------------------------------------------------- property test

ENCODINGS = list(image_codec.SUPPORTED_ENCODINGS) + ['nv21', '', 'MONO8', '8UC3']


@st.composite
def images(draw):
    encoding = draw(st.sampled_from(ENCODINGS))
    height = draw(st.integers(0, 40))
    width = draw(st.integers(0, 40))
    try:
        row = width * image_codec.bytes_per_pixel(encoding)
    except image_codec.ImageRejected:
        row = width * 2
    step = draw(st.one_of(st.just(row), st.integers(row, row + 7), st.integers(0, 200)))
    size = step * height
    data_len = draw(st.one_of(st.just(size), st.integers(max(0, size - 3), size + 3),
                              st.integers(0, 4000)))
    fill = draw(st.sampled_from(['random', 'zeros', 'ones', 'nan']))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    if fill == 'random':
        data = rng.integers(0, 256, data_len, dtype=np.uint8).tobytes()
    elif fill == 'nan':
        data = (np.full(data_len // 4 + 1, np.nan, np.float32).tobytes())[:data_len]
    else:
        data = bytes([0 if fill == 'zeros' else 255]) * data_len
    return raw_image(encoding=encoding, height=height, width=width, step=step,
                     is_bigendian=draw(st.integers(0, 1)), data=data)


def outcomes(c):
    return c['answered'] + c['no_target'] + c['rejected_total'] + c['dropped'] + c['errors']


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(msg=images())
def test_random_images_are_answered_or_rejected(graph, msg):
    node, pub, _, _ = graph
    before = node.health.counters()
    assert outcomes(before) == before['received']
    pub.publish(msg)
    after = wait_for(lambda: (lambda c: c if c['received'] == before['received'] + 1
                              and outcomes(c) == c['received'] else None)(
                                  node.health.counters()),
                     what='the frame to be received and accounted for')
    assert after['errors'] == before['errors']
    try:
        image_codec.image_to_array(msg.encoding, msg.height, msg.width, msg.step,
                                   msg.is_bigendian, msg.data, max_pixels=MAX_PIXELS)
    except image_codec.ImageRejected as exc:
        assert after['rejected'].get(exc.reason, 0) == before['rejected'].get(exc.reason, 0) + 1
    else:
        assert (after['answered'] + after['no_target'] + after['dropped']
                == before['answered'] + before['no_target'] + before['dropped'] + 1)


# ----------------------------------------------------------------------------- start-up

def run_node_process(*params, timeout=120):
    args = [str(BIN / 'centroid_node'), '--ros-args']
    for p in params:
        args += ['-p', p]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONUNBUFFERED='1'))


def broken_models(model_dir: Path, tmp: Path):
    """name -> (model path, expected message part) for every start-up integrity failure."""
    cases = {'missing_file': (tmp / 'nothing_here.ts', 'model file does not exist')}
    for name in ('corrupt', 'sha'):
        d = tmp / name
        d.mkdir()
        for f in model_dir.glob('reference_centroid.*'):
            (d / f.name).write_bytes(f.read_bytes())
    corrupt = tmp / 'corrupt' / 'reference_centroid.ts'
    corrupt.write_bytes(b'not a torchscript archive' * 10)
    manifest = json.loads(corrupt.with_suffix('.json').read_text())
    import hashlib
    manifest['files'][corrupt.name] = hashlib.sha256(corrupt.read_bytes()).hexdigest()
    corrupt.with_suffix('.json').write_text(json.dumps(manifest))
    cases['corrupt_file'] = (corrupt, 'could not be loaded')
    changed = tmp / 'sha' / 'reference_centroid.ts'
    changed.write_bytes(changed.read_bytes() + b'\0')
    cases['sha_mismatch'] = (changed, 'sha256')
    cases['wrong_task'] = (model_dir / 'reference_segmentation.ts', "'centroid' model is needed")
    return cases


def test_model_integrity_errors_at_start_up(model_dir, tmp_path):
    cases = broken_models(model_dir, tmp_path)
    # Start them all at once (each pays for importing torch), then check each.
    procs = {name: subprocess.Popen(
        [str(BIN / 'centroid_node'), '--ros-args', '-p', f'model_path:={path}'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, (path, _) in cases.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        path, expected = cases[name]
        assert proc.returncode == 2, (name, out, err)
        assert expected in err, (name, err)
        assert str(path) in err and 'Re-export it with' in err, (name, err)
        assert 'Traceback' not in err + out, (name, err)


@pytest.mark.skipif(not NO_GPU, reason='this machine has a GPU: no fallback to test')
def test_cuda_without_gpu_strict_device_exits(model_dir):
    result = run_node_process(f'model_path:={model_dir / "reference_centroid.ts"}',
                              'device:=cuda', 'strict_device:=true')
    assert result.returncode == 2, result.stderr
    assert "device 'cuda' requested but no such CUDA device is available" in result.stderr
    assert 'Traceback' not in result.stderr


@pytest.mark.skipif(not NO_GPU, reason='this machine has a GPU: no fallback to test')
def test_cuda_without_gpu_falls_back_with_warning(model_dir, tmp_path):
    log_path = tmp_path / 'node.log'
    with open(log_path, 'wb') as log:
        proc = subprocess.Popen(
            [str(BIN / 'centroid_node'), '--ros-args', '-p',
             f'model_path:={model_dir / "reference_centroid.ts"}', '-p', 'device:=cuda',
             '-p', 'image_topic:=/faults/cuda_image'],
            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED='1'))
        try:
            probe = make_node()
            centroids = TopicRecorder(probe, PointStamped, '/centroid')
            pub = probe.create_publisher(Image, '/faults/cuda_image', reliable_qos())
            stamp = Time(sec=31337)
            msg, (x, y) = good_frame(stamp)
            with ros_graph(probe):
                got = publish_until(pub, msg, lambda: [m for m in centroids.messages
                                                       if m.header.stamp == stamp], timeout=120)
            assert got[0].point.x == pytest.approx(x, abs=0.05)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
    output = log_path.read_text()
    assert code == 0, output
    assert 'running on CPU instead' in output and '[WARN]' in output
    assert 'on cpu via torchscript' in output
