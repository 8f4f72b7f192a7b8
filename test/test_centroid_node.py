"""CentroidNode in-process over real DDS with the analytic reference centroid model.

The reference model (nets.reference, 'centroid') returns the intensity-weighted mean pixel of
what it sees, so the node's answer is known exactly: the weighted centroid of the image as
the model input (mono8 / 255, mono16 / 65535, colour -> BT.601 luma, 32FC1 clipped to [0, 1],
bayer_rggb8 -> OpenCV's demosaiced luma, yuyv -> luma of its BT.601 video-range RGB, 16-bit
colour and Bayer -> the same on the 16-bit samples / 65535).
"""
import math

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PointStamped, Vector3Stamped
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ros_helpers import (TopicRecorder, init_rclpy, make_node, publish_until, reliable_qos,
                         ros_graph, wait_for)
from spacenav_perception.nets.reference import export_reference_model
from spacenav_perception.nodes.image_msgs import image_from_array

HEIGHT, WIDTH = 48, 64
TOLERANCE_PX = 0.05
_GRAY = {'rgb8': cv2.COLOR_RGB2GRAY, 'bgr8': cv2.COLOR_BGR2GRAY,
         'rgba8': cv2.COLOR_RGBA2GRAY, 'bgra8': cv2.COLOR_BGRA2GRAY,
         'rgb16': cv2.COLOR_RGB2GRAY, 'bgra16': cv2.COLOR_BGRA2GRAY}


def weighted_centroid(weights: np.ndarray):
    rows, cols = np.mgrid[:weights.shape[0], :weights.shape[1]]
    total = weights.sum()
    return float((weights * cols).sum() / total), float((weights * rows).sum() / total)


def blob_image(encoding: str, seed: int):
    """A random off-centre blob in `encoding` and the weights the model sees."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    cx, cy = rng.uniform(12, WIDTH - 12), rng.uniform(10, HEIGHT - 10)
    blob = np.exp(-((cols - cx) ** 2 + (rows - cy) ** 2) / (2 * rng.uniform(3, 8) ** 2))
    blob = np.clip(blob + 0.05 * rng.random((HEIGHT, WIDTH)), 0, 1)
    if encoding == 'mono8':
        img = np.round(blob * 255).astype(np.uint8)
        return img, img / 255.0
    if encoding == 'mono16':
        img = np.round(blob * 65535).astype(np.uint16)
        return img, img / 65535.0
    if encoding == '32FC1':
        img = (blob * 1.1 - 0.05).astype(np.float32)      # values outside [0, 1] are clipped
        return img, np.clip(img.astype(np.float64), 0, 1)
    full, dtype = (65535, np.uint16) if encoding.endswith('16') else (255, np.uint8)
    if encoding.startswith('bayer_'):    # a colour-filter camera's raw frame: demosaiced luma
        tint = rng.uniform(0.3, 1.0, 3)
        rgb = np.round(blob[..., None] * tint * full).astype(dtype)
        raw = rgb[..., 1].copy()
        raw[0::2, 0::2], raw[1::2, 1::2] = rgb[0::2, 0::2, 0], rgb[1::2, 1::2, 2]   # R G / G B
        return raw, cv2.cvtColor(raw, cv2.COLOR_BayerBG2GRAY) / full
    if encoding == 'yuyv':    # a USB camera's packed 4:2:2 frame with a colour tint
        y = np.round(40 + 170 * blob).astype(np.uint8)
        u, v = rng.integers(118, 139, 2)          # chroma small enough that nothing clips
        frame = np.empty((HEIGHT, WIDTH, 2), np.uint8)
        frame[..., 0] = y
        frame[:, 0::2, 1], frame[:, 1::2, 1] = u, v
        return frame, 1.164 * (y - 16.0) / 255.0  # BT.601 video range: luma = 1.164 (Y - 16)
    channels = 4 if encoding.startswith(('rgba', 'bgra')) else 3
    tint = rng.uniform(0.3, 1.0, channels)
    img = np.round(blob[..., None] * tint * full).astype(dtype)
    return img, cv2.cvtColor(img, _GRAY[encoding]) / full


@pytest.fixture(scope='module')
def graph(tmp_path_factory):
    init_rclpy()
    from spacenav_perception.nodes.centroid_node import CentroidNode
    model = export_reference_model('centroid', tmp_path_factory.mktemp('model'), HEIGHT, WIDTH)
    node = CentroidNode(parameter_overrides=[
        Parameter('model_path', value=str(model)), Parameter('publish_debug', value=True),
        Parameter('qos_reliability', value='reliable'), Parameter('qos_depth', value=10)])
    probe = make_node()
    recorders = {
        'centroid': TopicRecorder(probe, PointStamped, '/centroid'),
        'bearing': TopicRecorder(probe, Vector3Stamped, '/centroid/bearing'),
        'debug': TopicRecorder(probe, Image, '/centroid/debug'),
    }
    image_pub = probe.create_publisher(Image, '/camera/image_raw', reliable_qos())
    info_pub = probe.create_publisher(CameraInfo, '/camera/camera_info', reliable_qos())
    with ros_graph(node, probe):
        yield node, image_pub, info_pub, recorders


_stamps = iter(range(1, 10 ** 6))


def send(image_pub, recorder, img, encoding, **kwargs):
    """Publish until the answer with this frame's unique stamp arrives; return the answer."""
    stamp = Time(sec=next(_stamps), nanosec=123)
    msg = image_from_array(img, encoding, stamp=stamp, frame_id='camera_optical', **kwargs)
    same = (lambda m: m.header.stamp.sec == stamp.sec)
    answers = publish_until(image_pub, msg,
                            lambda: [m for m in recorder.messages if same(m)])
    return msg, answers[0]


CASES = [('mono8', {}), ('mono8', {'step': WIDTH + 5}), ('mono16', {'is_bigendian': False}),
         ('mono16', {'is_bigendian': True}), ('rgb8', {}), ('rgb8', {'step': WIDTH * 3 + 2}),
         ('bgr8', {}), ('rgba8', {}), ('bgra8', {}), ('32FC1', {}),
         ('32FC1', {'is_bigendian': True}), ('bayer_rggb8', {}),
         ('bayer_rggb8', {'step': WIDTH + 3}), ('yuyv', {}), ('yuyv', {'step': WIDTH * 2 + 4}),
         ('rgb16', {'is_bigendian': True}), ('bgra16', {'step': WIDTH * 8 + 6}),
         ('bayer_rggb16', {'is_bigendian': True})]


@pytest.mark.parametrize('encoding,layout', CASES,
                         ids=[f'{e}-{"-".join(f"{k}={v}" for k, v in l.items()) or "packed"}'
                              for e, l in CASES])
def test_centroid_matches_analytic(graph, encoding, layout):
    _, image_pub, _, recorders = graph
    img, weights = blob_image(encoding, seed=len(encoding) * 7 + len(layout))
    msg, answer = send(image_pub, recorders['centroid'], img, encoding, **layout)
    expected_x, expected_y = weighted_centroid(weights)
    assert answer.header.stamp == msg.header.stamp
    assert answer.header.frame_id == 'camera_optical'
    assert abs(answer.point.x - expected_x) < TOLERANCE_PX
    assert abs(answer.point.y - expected_y) < TOLERANCE_PX
    assert 0.5 <= answer.point.z <= 1.0          # z = confidence


def test_bearing_after_camera_info(graph):
    _, image_pub, info_pub, recorders = graph
    fx, fy, cx, cy = 80.0, 82.0, 31.5, 23.5
    info = CameraInfo(width=WIDTH, height=HEIGHT, distortion_model='plumb_bob',
                      k=[fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0], d=[0.0] * 5)
    info.header.frame_id = 'camera_optical'
    node = graph[0]
    publish_until(info_pub, info, lambda: node.has_camera_info)
    img, weights = blob_image('mono8', seed=3)
    x, y = weighted_centroid(weights)
    msg, _ = send(image_pub, recorders['centroid'], img, 'mono8')
    found = recorders['bearing'].wait(where=lambda m: m.header.stamp == msg.header.stamp)
    vector = found[0].vector
    ray = np.array([(x - cx) / fx, (y - cy) / fy, 1.0])
    ray /= np.linalg.norm(ray)
    assert found[0].header.frame_id == 'camera_optical'
    assert math.isclose(vector.x ** 2 + vector.y ** 2 + vector.z ** 2, 1.0, rel_tol=1e-9)
    assert np.allclose([vector.x, vector.y, vector.z], ray, atol=TOLERANCE_PX / fx)


def test_debug_image(graph):
    _, image_pub, _, recorders = graph
    img, weights = blob_image('mono8', seed=11)
    msg, answer = send(image_pub, recorders['centroid'], img, 'mono8')
    debug = recorders['debug'].wait(where=lambda m: m.header.stamp == msg.header.stamp)[0]
    assert (debug.encoding, debug.height, debug.width) == ('rgb8', HEIGHT, WIDTH)
    assert debug.step == WIDTH * 3 and debug.header.frame_id == 'camera_optical'
    rgb = np.frombuffer(debug.data, np.uint8).reshape(HEIGHT, WIDTH, 3)
    # The drawing is green; elsewhere the picture is the grey input.
    x, y = int(round(answer.point.x)), int(round(answer.point.y))
    assert tuple(rgb[y, x]) == (0, 255, 0)
    grey = np.repeat(img[:, :, None], 3, axis=2)
    untouched = np.all(rgb == grey, axis=2)
    assert untouched.mean() > 0.5
    assert np.array_equal(rgb[0, 0], grey[0, 0])


def test_no_target_publishes_nothing(graph):
    node, image_pub, _, recorders = graph
    before = node.health.counters()['no_target']
    black = np.zeros((HEIGHT, WIDTH), np.uint8)
    msg = image_from_array(black, 'mono8', stamp=Time(sec=999_999), frame_id='camera_optical')
    publish_until(image_pub, msg, lambda: node.health.counters()['no_target'] > before)
    # A later good frame is answered, and no answer ever carried the black frame's stamp.
    send(image_pub, recorders['centroid'], *blob_image('mono8', seed=5)[:1], 'mono8')
    assert not [m for m in recorders['centroid'].messages if m.header.stamp.sec == 999_999]


def test_mono16_bits_reach_the_predictor_and_the_debug_image(graph):
    """mono16_bits=12: samples above 4095 are clipped before the model (the reference model's
    weighted centroid moves accordingly) and the debug image is drawn on the 12-bit scale."""
    from spacenav_perception.nodes.centroid_node import CentroidNode
    node16 = graph[0]
    blob, _ = blob_image('mono16', seed=21)
    samples = (blob >> 4).astype(np.uint16)                          # a 12-bit camera
    samples[5:9, 50:60] = 40000                                      # over range: clipped
    weights = np.minimum(samples, 4095) / 4095.0
    node12 = CentroidNode(parameter_overrides=[
        Parameter('model_path', value=str(node16.predictor.engine.model_path)),
        Parameter('mono16_bits', value=12), Parameter('publish_debug', value=True),
        Parameter('image_topic', value='/cam12'), Parameter('qos_reliability', value='reliable')])
    probe = make_node()
    answers = TopicRecorder(probe, PointStamped, '/centroid')
    debug = TopicRecorder(probe, Image, '/centroid/debug')
    pub = probe.create_publisher(Image, '/cam12', reliable_qos())
    with ros_graph(node12, probe):
        msg, answer = send(pub, answers, samples, 'mono16')
        expected_x, expected_y = weighted_centroid(weights)
        assert abs(answer.point.x - expected_x) < TOLERANCE_PX
        assert abs(answer.point.y - expected_y) < TOLERANCE_PX
        drawn = debug.wait(where=lambda m: m.header.stamp == msg.header.stamp)[0]
        rgb = np.frombuffer(drawn.data, np.uint8).reshape(HEIGHT, WIDTH, 3)
        assert tuple(rgb[6, 55]) == (255, 255, 255)                  # clipped to full scale
        # every frame this node processed was over range (send() may have repeated it while
        # discovery finished): each is counted once
        def settled():
            c = node12.health.counters()
            ended = c['answered'] + c['no_target'] + c['dropped'] + c['rejected_total'] + c['errors']
            return c if c['received'] == ended else None
        done = wait_for(settled, what='every received frame processed')
        assert done['answered'] >= 1 and done['errors'] == done['rejected_total'] == 0
        assert done['input_warnings'] == {
            'mono16_over_range': done['answered'] + done['no_target']}


# ----------------------------------------------------------------------------- compressed

@pytest.fixture(scope='module')
def compressed_graph(tmp_path_factory):
    """A centroid node on image_transport:=compressed (CompressedImage on TOPIC/compressed)."""
    init_rclpy()
    from spacenav_perception.nodes.centroid_node import CentroidNode
    model = export_reference_model('centroid', tmp_path_factory.mktemp('cmodel'), HEIGHT, WIDTH)
    node = CentroidNode(parameter_overrides=[
        Parameter('model_path', value=str(model)), Parameter('image_topic', value='/cam2/image'),
        Parameter('image_transport', value='compressed'),
        Parameter('qos_reliability', value='reliable'), Parameter('qos_depth', value=10)])
    probe = make_node()
    centroids = TopicRecorder(probe, PointStamped, '/centroid')
    pub = probe.create_publisher(CompressedImage, '/cam2/image/compressed', reliable_qos())
    with ros_graph(node, probe):
        yield node, pub, centroids


def compressed_msg(img, encoding, codec):
    from spacenav_perception.core.compressed_image import encode_compressed
    fmt, data = encode_compressed(img, encoding, codec)
    msg = CompressedImage(format=fmt, data=data)
    msg.header.stamp = Time(sec=next(_stamps), nanosec=7)
    msg.header.frame_id = 'camera_optical'
    return msg


@pytest.mark.parametrize('encoding, codec, tolerance', [
    ('mono8', 'png', TOLERANCE_PX), ('rgb8', 'png', TOLERANCE_PX), ('mono16', 'png', TOLERANCE_PX),
    ('mono8', 'jpeg', 0.3)])
def test_compressed_frames_answered_like_raw_ones(compressed_graph, encoding, codec, tolerance):
    node, pub, centroids = compressed_graph
    assert node.health.topic == '/cam2/image/compressed'
    img, weights = blob_image(encoding, seed=41)
    msg = compressed_msg(img, encoding, codec)
    answer = publish_until(pub, msg, lambda: [m for m in centroids.messages
                                              if m.header.stamp == msg.header.stamp])[0]
    expected_x, expected_y = weighted_centroid(weights)
    assert answer.header.frame_id == 'camera_optical'
    assert abs(answer.point.x - expected_x) < tolerance
    assert abs(answer.point.y - expected_y) < tolerance


def test_corrupt_compressed_frame_rejected_and_node_carries_on(compressed_graph):
    node, pub, centroids = compressed_graph
    for data, reason in ((b'not an image at all', 'unsupported_format'),
                         (compressed_msg(np.zeros((HEIGHT, WIDTH), np.uint8), 'mono8',
                                         'png').data[:60], 'decode_failed')):
        before = node.health.counters()['rejected'].get(reason, 0)
        bad = CompressedImage(format='png', data=bytes(data))
        publish_until(pub, bad, lambda: node.health.counters()['rejected'].get(reason, 0) > before)
    assert node.health.counters()['errors'] == 0
    img, weights = blob_image('mono8', seed=43)
    msg = compressed_msg(img, 'mono8', 'png')
    answer = publish_until(pub, msg, lambda: [m for m in centroids.messages
                                              if m.header.stamp == msg.header.stamp])[0]
    assert abs(answer.point.x - weighted_centroid(weights)[0]) < TOLERANCE_PX


def test_zoom_refine_parameter_replaces_the_manifests(graph):
    """Default (-1.0): the manifest's (none for the reference model); set: that factor; one that
    would cut the body stops the node at start-up with one line."""
    from spacenav_perception.nodes.centroid_node import CentroidNode
    from spacenav_perception.nodes.params import NodeConfigError
    node = graph[0]
    assert node.predictor.zoom_refine == 0.0
    model = Parameter('model_path', value=str(node.predictor.engine.model_path))
    unused = Parameter('image_topic', value='/unused_image')
    other = CentroidNode(parameter_overrides=[model, unused,
                                              Parameter('zoom_refine', value=2.25)])
    try:
        assert other.predictor.zoom_refine == 2.25
        assert other.health.info['zoom_refine'] == '2.25'     # on /diagnostics
    finally:
        other.destroy_node()
    with pytest.raises(NodeConfigError, match=r'zoom_refine 0\.5 must be 0 \(off\) or in'):
        CentroidNode(parameter_overrides=[model, unused, Parameter('zoom_refine', value=0.5)])
