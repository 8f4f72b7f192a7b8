"""HazardNode in-process over real DDS with the analytic reference segmenter.

The reference segmenter (nets.reference, 'segmentation') classifies every pixel by its
dominant colour (ground when all channels < 0.25), so every output is known exactly.
"""
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PointStamped
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from ros_helpers import (TopicRecorder, init_rclpy, make_node, publish_until, reliable_qos,
                         ros_graph, wait_for)
from spacenav_perception.nets.reference import expected_classes, export_reference_model
from spacenav_perception.nodes.image_msgs import image_from_array

HEIGHT, WIDTH = 36, 44
PALETTE = {0: (0, 0, 0), 1: (0, 255, 0), 2: (0, 0, 255), 3: (255, 0, 0)}


def scene() -> np.ndarray:
    """rgb8: sky on top (red), dark ground with green small rocks and blue large rocks."""
    rng = np.random.default_rng(7)
    rgb = (rng.random((HEIGHT, WIDTH, 3)) * 40).astype(np.uint8)      # ground (< 0.25)
    rgb[:6] = (230, 20, 30)                                           # sky
    rgb[14:18, 5:9] = (10, 200, 30)                                   # small rock
    rgb[20:30, 30:40] = (20, 40, 220)                                 # large rock
    rgb[30:33, 3:6] = (60, 180, 10)                                   # small rock
    return rgb


def brute_force_safe_radius(classes: np.ndarray, x: int, y: int) -> float:
    """Distance from pixel (x, y) to the nearest non-ground pixel centre or outside pixel."""
    rows, cols = np.mgrid[-1:HEIGHT + 1, -1:WIDTH + 1]
    unsafe = np.ones(rows.shape, bool)
    unsafe[1:-1, 1:-1] = classes != 0
    return float(np.sqrt((cols[unsafe] - x) ** 2 + (rows[unsafe] - y) ** 2).min())


@pytest.fixture(scope='module')
def graph(tmp_path_factory):
    init_rclpy()
    from spacenav_perception.nodes.hazard_node import HazardNode
    model = export_reference_model('segmentation', tmp_path_factory.mktemp('model'),
                                   HEIGHT, WIDTH)
    node = HazardNode(parameter_overrides=[
        Parameter('model_path', value=str(model)), Parameter('publish_color', value=True),
        Parameter('qos_reliability', value='reliable'), Parameter('qos_depth', value=5),
        Parameter('min_hazard_region_px', value=12)])
    probe = make_node()
    recorders = {topic: TopicRecorder(probe, Image, topic)
                 for topic in ('/hazard_mask', '/segmentation', '/segmentation/color')}
    recorders['/safe_site'] = TopicRecorder(probe, PointStamped, '/safe_site')
    pub = probe.create_publisher(Image, '/camera/image_raw', reliable_qos())
    with ros_graph(node, probe):
        yield node, pub, recorders


def as_array(msg: Image) -> np.ndarray:
    channels = 3 if msg.encoding == 'rgb8' else 1
    arr = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
    arr = arr[:, :msg.width * channels].reshape(msg.height, msg.width, channels)
    return arr[..., 0] if channels == 1 else arr


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8'])
def test_all_outputs_exact(graph, encoding):
    node, pub, recorders = graph
    rgb = scene()
    if encoding == 'bgr8':
        img = np.ascontiguousarray(rgb[..., ::-1])
    elif encoding == 'rgba8':
        img = np.concatenate([rgb, np.full((HEIGHT, WIDTH, 1), 255, np.uint8)], axis=2)
    else:
        img = rgb
    stamp = Time(sec={'rgb8': 101, 'bgr8': 102, 'rgba8': 103}[encoding], nanosec=42)
    msg = image_from_array(img, encoding, stamp=stamp, frame_id='nav_cam')
    mine = (lambda m: m.header.stamp == stamp)
    got = publish_until(pub, msg, lambda: all(any(mine(m) for m in r.messages)
                                              for r in recorders.values()) and
                        {t: next(m for m in r.messages if mine(m))
                         for t, r in recorders.items()})
    classes = expected_classes(rgb.astype(np.float32) / 255.0)
    assert (classes[30:33, 3:6] == 1).all()
    classes[30:33, 3:6] = 0           # 9 px: under min_hazard_region_px, ground in every output
    assert set(np.unique(classes)) == {0, 1, 2, 3}
    for topic, out in got.items():
        assert out.header.frame_id == 'nav_cam' and out.header.stamp == stamp
    for topic in ('/hazard_mask', '/segmentation', '/segmentation/color'):
        assert (got[topic].height, got[topic].width) == (HEIGHT, WIDTH)
    assert got['/segmentation'].encoding == 'mono8'
    assert np.array_equal(as_array(got['/segmentation']), classes)
    assert got['/hazard_mask'].encoding == 'mono8'
    assert np.array_equal(as_array(got['/hazard_mask']),
                          np.where(np.isin(classes, [1, 2]), 255, 0).astype(np.uint8))
    color = got['/segmentation/color']
    assert color.encoding == 'rgb8'
    expected_color = np.array([PALETTE[c] for c in range(4)], np.uint8)[classes]
    assert np.array_equal(as_array(color), expected_color)
    site = got['/safe_site'].point
    x, y = int(site.x), int(site.y)
    assert (x, y) == (site.x, site.y) and classes[y, x] == 0
    best = max(brute_force_safe_radius(classes, c, r)
               for r, c in zip(*np.nonzero(classes == 0)))
    assert site.z == pytest.approx(best, abs=1e-3)
    assert brute_force_safe_radius(classes, x, y) == pytest.approx(best, abs=1e-3)


@pytest.mark.parametrize('value', [-1, 2.5])
def test_bad_min_hazard_region_is_refused_at_start_up(graph, value):
    from rclpy.exceptions import InvalidParameterTypeException
    from spacenav_perception.nodes.hazard_node import HazardNode
    from spacenav_perception.nodes.params import NodeConfigError
    with pytest.raises((NodeConfigError, InvalidParameterTypeException),
                       match='min_hazard_region_px'):
        HazardNode(parameter_overrides=[Parameter('min_hazard_region_px', value=value)])


def test_bad_upsampling_is_refused_at_start_up(graph):
    from spacenav_perception.nodes.hazard_node import HazardNode
    from spacenav_perception.nodes.params import NodeConfigError
    with pytest.raises(NodeConfigError, match="upsampling='cubic' must be one of bilinear, nearest"):
        HazardNode(parameter_overrides=[Parameter('upsampling', value='cubic')])


def test_post_processing_parameters_reach_the_predictor(graph):
    from spacenav_perception.nodes.hazard_node import HazardNode
    node = graph[0]
    assert (node.predictor.flip_average, node.predictor.upsampling) == (True, 'bilinear')
    other = HazardNode(parameter_overrides=[
        Parameter('model_path', value=str(node.predictor.engine.model_path)),
        Parameter('flip_average', value=False), Parameter('upsampling', value='nearest'),
        Parameter('image_topic', value='/unused_image')])
    try:
        assert (other.predictor.flip_average, other.predictor.upsampling) == (False, 'nearest')
    finally:
        other.destroy_node()


def test_logit_offset_parameter_replaces_the_manifests(graph):
    """Not set: the manifest's offsets (none for the reference model); set: those, as the
    predictor's; one that does not fit the model's classes stops the node at start-up."""
    from spacenav_perception.nodes.hazard_node import HazardNode
    from spacenav_perception.nodes.params import NodeConfigError
    node = graph[0]
    assert node.predictor.logit_offset == ()
    model = Parameter('model_path', value=str(node.predictor.engine.model_path))
    other = HazardNode(parameter_overrides=[
        model, Parameter('logit_offset', value=[0.0, -0.5, -1.0, 0.0]),
        Parameter('image_topic', value='/unused_image')])
    try:
        assert other.predictor.logit_offset == (0.0, -0.5, -1.0, 0.0)
    finally:
        other.destroy_node()
    with pytest.raises(NodeConfigError, match='logit_offset: logit_offset has 2 value'):
        HazardNode(parameter_overrides=[model, Parameter('logit_offset', value=[0.0, 1.0]),
                                        Parameter('image_topic', value='/unused_image')])


def test_no_safe_site_when_all_hazard(graph):
    node, pub, recorders = graph
    rocks = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    rocks[..., 1] = 200                                      # everything a small rock
    stamp = Time(sec=555)
    msg = image_from_array(rocks, 'rgb8', stamp=stamp)
    masks = publish_until(pub, msg, lambda: [m for m in recorders['/hazard_mask'].messages
                                             if m.header.stamp == stamp])
    assert np.all(as_array(masks[0]) == 255)
    # A later frame's safe site arrives on the same topic after this frame's would have.
    later = Time(sec=556)
    publish_until(pub, image_from_array(scene(), 'rgb8', stamp=later),
                  lambda: [m for m in recorders['/safe_site'].messages if m.header.stamp == later])
    assert not [m for m in recorders['/safe_site'].messages if m.header.stamp == stamp]


def test_mono16_bits_scales_unshifted_samples_and_counts_over_range(graph):
    """mono16_bits=12: a 12-bit camera's unshifted samples (0..4095) span the model's input
    range; at the default 16 bits the same frame is nearly black (all ground for the
    reference segmenter's 0.25 threshold). Samples above 4095 are clipped and counted."""
    from spacenav_perception.nodes.hazard_node import HazardNode
    from spacenav_perception.nodes.params import NodeConfigError
    node16, pub16, recorders16 = graph
    frame = np.full((HEIGHT, WIDTH), 400, np.uint16)              # 0.098 of 12 bits: ground
    frame[:, :WIDTH // 2] = 3000                                   # 0.73 of 12 bits: rock
    expected = np.zeros((HEIGHT, WIDTH), np.uint8)
    expected[:, :WIDTH // 2] = 255
    model = Parameter('model_path', value=str(node16.predictor.engine.model_path))
    node12 = HazardNode(parameter_overrides=[
        model, Parameter('mono16_bits', value=12), Parameter('image_topic', value='/cam12'),
        Parameter('qos_reliability', value='reliable'), Parameter('qos_depth', value=5)])
    probe = make_node()
    recorder = TopicRecorder(probe, Image, '/hazard_mask')
    diagnostics = TopicRecorder(probe, DiagnosticArray, '/diagnostics')
    pub12 = probe.create_publisher(Image, '/cam12', reliable_qos())
    with ros_graph(node12, probe):
        for sec, values in ((701, frame), (702, np.where(frame == 3000, 5000, 400))):
            stamp = Time(sec=sec)
            msg = image_from_array(values.astype(np.uint16), 'mono16', stamp=stamp)
            answered = lambda: [m for m in recorder.messages if m.header.stamp == stamp]
            # The first frame is repeated until answered (discovery). The subscription is then
            # matched and reliable, so the over-range frame is sent once: a repeat would be
            # clipped and counted a second time.
            if sec == 701:
                got = publish_until(pub12, msg, answered)
            else:
                pub12.publish(msg)
                got = wait_for(answered, what='the answer to the over-range frame')
            assert np.array_equal(as_array(got[0]), expected)
        assert node12.health.counters()['input_warnings'] == {'mono16_over_range': 1}

        def cam12_status():    # /diagnostics of this node: the one watching /cam12
            return [(st.level, st.message, {kv.key: kv.value for kv in st.values})
                    for a in diagnostics.messages for st in a.status
                    if any(kv.key == 'topic' and kv.value == '/cam12' for kv in st.values)]
        level, message, values = wait_for(
            lambda: next((s for s in cam12_status()
                          if s[2].get('input_warning.mono16_over_range') == '1'), None),
            what='/diagnostics counting the clipped frame')
        assert level == DiagnosticStatus.WARN and '1 with input warnings' in message
    # The 16-bit node (the default) reads the same samples as 16-bit values: no hazard.
    stamp = Time(sec=703)
    got = publish_until(pub16, image_from_array(frame, 'mono16', stamp=stamp),
                        lambda: [m for m in recorders16['/hazard_mask'].messages
                                 if m.header.stamp == stamp])
    assert not as_array(got[0]).any()
    assert node16.health.counters()['input_warnings'] == {}
    for bad in (7, 17):
        with pytest.raises(NodeConfigError, match='mono16_bits'):
            HazardNode(parameter_overrides=[model, Parameter('mono16_bits', value=bad),
                                            Parameter('image_topic', value='/unused_image')])
    with pytest.raises(NodeConfigError, match="image_transport='theora' is not one of raw"):
        HazardNode(parameter_overrides=[model, Parameter('image_transport', value='theora'),
                                        Parameter('image_topic', value='/unused_image')])
