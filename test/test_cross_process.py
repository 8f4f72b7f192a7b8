"""Nodes as separate processes (console scripts and `spacenav run`), talking to pytest over
real DDS; SIGTERM / SIGINT end them cleanly with exit code 0."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import Image

from ros_helpers import TopicRecorder, make_node, publish_until, reliable_qos, ros_graph
from spacenav_perception.nets.reference import export_reference_model
from spacenav_perception.nodes.image_msgs import image_from_array

BIN = Path(sys.executable).parent
HEIGHT, WIDTH = 24, 32
START_TIMEOUT = 120.0        # a cold start imports torch; generous, only bounds the wait


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    out = tmp_path_factory.mktemp('models')
    return {'centroid': export_reference_model('centroid', out, HEIGHT, WIDTH),
            'segmentation': export_reference_model('segmentation', out, HEIGHT, WIDTH)}


def start(args, log_path):
    """Start a process with its output in a file (no pipe to fill up)."""
    log = open(log_path, 'wb')
    return subprocess.Popen([str(a) for a in args], stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED='1')), log


def stop(process, log, log_path, sig=signal.SIGTERM) -> str:
    process.send_signal(sig)
    try:
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    output = Path(log_path).read_text(errors='replace')
    assert code == 0, f'exit code {code}; output:\n{output}'
    assert 'Traceback' not in output, output
    return output


def blob():
    img = np.zeros((HEIGHT, WIDTH), np.uint8)
    img[5:9, 20:26] = 255
    return img          # centroid (22.5, 6.5)


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_console_script_centroid_node(models, tmp_path, sig):
    log_path = tmp_path / 'node.log'
    process, log = start([BIN / 'centroid_node', '--ros-args',
                          '-p', f'model_path:={models["centroid"]}',
                          '-p', 'image_topic:=/xp/image'], log_path)
    try:
        probe = make_node()
        centroids = TopicRecorder(probe, PointStamped, '/centroid')
        pub = probe.create_publisher(Image, '/xp/image', reliable_qos())
        msg = image_from_array(blob(), 'mono8', stamp=Time(sec=7, nanosec=9), frame_id='cam')
        with ros_graph(probe):
            got = publish_until(pub, msg, lambda: centroids.messages, timeout=START_TIMEOUT)
        point = got[0]
        assert point.header.frame_id == 'cam' and point.header.stamp == msg.header.stamp
        assert (point.point.x, point.point.y) == pytest.approx((22.5, 6.5), abs=0.05)
    finally:
        output = stop(process, log, log_path, sig)
    assert 'listening on /xp/image' in output


def test_spacenav_run_nav_graph(models, tmp_path):
    log_path = tmp_path / 'run.log'
    process, log = start([BIN / 'spacenav', 'run', '--config', 'nav',
                          f'centroid_model:={models["centroid"]}',
                          f'hazard_model:={models["segmentation"]}',
                          'image_topic:=/xp/run_image', 'qos_reliability:=reliable'], log_path)
    try:
        probe = make_node()
        centroids = TopicRecorder(probe, PointStamped, '/centroid')
        masks = TopicRecorder(probe, Image, '/hazard_mask')
        pub = probe.create_publisher(Image, '/xp/run_image', reliable_qos())
        rgb = np.repeat(blob()[:, :, None], 3, axis=2)
        rgb[..., 0] = 0
        rgb[..., 2] = 0                           # a green "small rock" on dark ground
        msg = image_from_array(rgb, 'rgb8', stamp=Time(sec=11), frame_id='cam')
        with ros_graph(probe):
            publish_until(pub, msg, lambda: centroids.messages and masks.messages,
                          timeout=START_TIMEOUT)
        mask = np.frombuffer(masks.messages[0].data, np.uint8).reshape(HEIGHT, WIDTH)
        assert np.array_equal(mask, np.where(rgb[..., 1] > 64, 255, 0))
        assert masks.messages[0].header.stamp == msg.header.stamp
        x, y = centroids.messages[0].point.x, centroids.messages[0].point.y
        assert (x, y) == pytest.approx((22.5, 6.5), abs=0.05)
    finally:
        output = stop(process, log, log_path, signal.SIGTERM)
    assert 'started centroid_node, hazard_node' in output
