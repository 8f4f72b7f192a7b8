"""Eval node over real DDS with known predictions and truths, and the pure matching core.

Figures must be exact: n matched, mean / median / p95 error, missed, unmatched, duplicates,
hazard IoU and segmentation per-class IoU are computed here independently and compared.
"""
import json
import math

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from ros_helpers import (TopicRecorder, init_rclpy, make_node, reliable_qos, ros_graph, wait_for,
                         wait_matched)
from spacenav_perception.evaluation import online_metrics as om
from spacenav_perception.nodes.image_msgs import image_from_array

T0 = 1_700_000_000


def stamp(i):
    return Time(sec=T0 + i // 10, nanosec=(i % 10) * 100_000_000)


def stamp_ns(i):
    return (T0 + i // 10) * 1_000_000_000 + (i % 10) * 100_000_000


def point(i, x, y):
    msg = PointStamped()
    msg.header.stamp = stamp(i)
    msg.point.x, msg.point.y = float(x), float(y)
    return msg


# ----------------------------------------------------------------------------- pure core

def test_pair_matcher_counts_every_case():
    m = om.PairMatcher(max_pending=3, timeout_s=None)
    assert m.add_truth(1, 'T1') is None
    assert m.add_pred(1, 'P1')[:3] == (1, 'T1', 'P1')        # matched
    assert m.add_pred(1, 'P1b') is None                        # duplicate after scoring
    assert m.add_truth(1, 'T1b') is None                       # duplicate truth
    assert m.add_pred(2, 'P2') is None
    assert m.add_truth(2, 'T2')[:3] == (2, 'T2', 'P2')         # prediction first
    m.add_truth(3, 'T3')                                       # never answered
    m.add_truth(3, 'T3 again')                                 # duplicate while pending
    m.add_pred(9, 'P9')                                        # no truth
    for s in (10, 11, 12, 13):                                 # 4 > max_pending: 3 evicted
        m.add_truth(s, 'T')
    c = m.counters()
    assert c['matched'] == 2
    assert c['truth_evicted'] == 2 and c['missed'] == 2        # 3 and 10 evicted
    m.add_pred(3, 'late')                                      # 3 was closed as missed
    missed = m.finalize()
    c = m.counters()
    assert sorted(missed) == [11, 12, 13]
    assert c == {'matched': 2, 'missed': 5, 'unmatched': 1, 'late': 1,
                 'truth_received': 9, 'pred_received': 5, 'truth_duplicates': 2,
                 'pred_duplicates': 1, 'duplicates': 3, 'truth_evicted': 2,
                 'pred_evicted': 0, 'pending_truth': 0, 'pending_pred': 0}


def test_pair_matcher_timeout():
    m = om.PairMatcher(max_pending=10, timeout_s=5.0)
    m.add_truth(1, 'a', now=0.0)
    m.add_pred(2, 'b', now=1.0)
    m.add_truth(3, 'c', now=4.0)
    assert m.expire(5.5) == [1]
    c = m.counters()
    assert (c['missed'], c['unmatched'], c['pending_truth'], c['pending_pred']) == (1, 0, 1, 1)
    m.expire(6.5)
    assert m.counters()['unmatched'] == 1


def test_statistics_helpers():
    s = om.summarize_errors([1.0, 2.0, 3.0, 10.0])
    assert s == {'n': 4, 'mean': 4.0, 'median': 2.5, 'p95': pytest.approx(8.95), 'max': 10.0}
    assert math.isnan(om.summarize_errors([])['mean'])
    truth = np.array([[0, 1, 2], [3, 3, 0]])
    pred = np.array([[0, 1, 1], [3, 0, 0]])
    cm = om.confusion(pred, truth, 4)
    assert cm.tolist() == [[2, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 1]]
    assert om.per_class_iou(cm) == [2 / 3, 0.5, 0.0, 0.5]
    assert om.binary_iou_counts(np.array([0, 255, 255]), np.array([0, 0, 255])) == (1, 2)
    assert om.iou_from_counts(0, 0) == 1.0


def test_evaluator_worst_frames_and_pictures(tmp_path):
    ev = om.OnlineEvaluator(worst_k=2, samples=3, timeout_s=None)
    rng = np.random.default_rng(0)
    errors = []
    for i in range(8):
        ev.add_image(i, rng.integers(0, 255, (64, 80), dtype=np.uint8), now=i)
        ev.add_centroid_truth(i, (10.0, 20.0), now=i)
        ev.add_centroid_pred(i, (10.0 + i, 20.0), now=i + 0.25)
        errors.append(float(i))
    s = ev.summary()
    assert s['centroid']['n_scored'] == 8
    assert s['centroid']['error_px_mean'] == pytest.approx(np.mean(errors))
    assert s['latency']['centroid']['p50_ms'] == pytest.approx(250.0)
    assert [w['stamp_ns'] for w in ev.worst('centroid')] == [7, 6]
    assert [w['stamp_ns'] for w in ev.samples('centroid')] == [0, 1, 2]
    truth = np.zeros((16, 24), np.uint8)
    truth[4:8, 4:12] = 255
    ev.add_image(100, rng.integers(0, 255, (16, 24, 3), dtype=np.uint8), now=1)
    ev.add_hazard_truth(100, truth, now=1)
    ev.add_hazard_pred(100, truth, now=1)
    written = om.write_pictures(ev, tmp_path)
    assert set(written) == {'centroid_contact_sheet', 'centroid_worst', 'centroid_error_hist',
                            'hazard_overlays', 'hazard_worst'}
    for path in written.values():
        assert path.is_file() and path.stat().st_size > 0
    report = om.write_report(ev, tmp_path / 'r.json')
    data = json.loads(report.read_text())
    assert data['centroid']['matched'] == 8 and data['hazard']['iou_pooled'] == 1.0


# ----------------------------------------------------------------------------- node over DDS

@pytest.fixture
def eval_graph(tmp_path):
    init_rclpy()
    from spacenav_perception.nodes.eval_node import EvalNode
    node = EvalNode(parameter_overrides=[
        Parameter('qos_reliability', value='reliable'),
        Parameter('qos_depth', value=100),
        Parameter('match_timeout_s', value=0.0),
        Parameter('output_dir', value=str(tmp_path / 'eval')),
        Parameter('report_path', value=str(tmp_path / 'eval' / 'report.json')),
        Parameter('listen_diagnostics', value=False)])
    probe = make_node('eval_probe')
    pubs = {name: probe.create_publisher(typ, topic, reliable_qos(100)) for name, typ, topic in (
        ('image', Image, '/camera/image_raw'), ('centroid', PointStamped, '/centroid'),
        ('centroid_truth', PointStamped, '/centroid_truth'),
        ('hazard', Image, '/hazard_mask'), ('hazard_truth', Image, '/hazard_truth'),
        ('segmentation', Image, '/segmentation'),
        ('segmentation_truth', Image, '/segmentation_truth'))}
    diagnostics = TopicRecorder(probe, DiagnosticArray, '/diagnostics')
    with ros_graph(node, probe, destroy=False):
        for pub in pubs.values():
            wait_matched(pub)
        yield node, pubs, diagnostics
    probe.destroy_node()
    node.destroy_node()


def test_eval_node_centroid_figures_exact(eval_graph, tmp_path):
    node, pubs, diagnostics = eval_graph
    rng = np.random.default_rng(1)
    truths = {i: (float(rng.uniform(0, 100)), float(rng.uniform(0, 100))) for i in range(12)}
    del truths[5]                                      # frame 5: no target, no truth
    errors = []
    answered = [i for i in truths if i not in (3, 8)]  # 3 and 8: truth but no prediction
    for i in range(12):
        pubs['image'].publish(image_from_array(np.full((8, 10), i, np.uint8), 'mono8',
                                               stamp=stamp(i)))
    ev = node.evaluator
    # Images first (the answer latency is measured from the image's arrival).
    wait_for(lambda: ev.images.received == 12, what='images at the evaluator')
    for i, (x, y) in truths.items():
        pubs['centroid_truth'].publish(point(i, x, y))
    for i in answered:
        dx, dy = rng.normal(0, 3, 2)
        x, y = truths[i]
        pubs['centroid'].publish(point(i, x + dx, y + dy))
        errors.append(math.hypot(dx, dy))
        if i == 4:                                     # duplicated answer: counted, not scored
            pubs['centroid'].publish(point(i, x + 50, y))
    pubs['centroid'].publish(point(5, 1.0, 2.0))      # prediction without truth
    pubs['centroid_truth'].publish(point(0, *truths[0]))   # duplicated truth

    wait_for(lambda: ev.centroid.truth.received == 12 and ev.centroid.pred.received == 11
             and ev.images.received == 12, what='all messages at the evaluator')
    written = node.write_outputs()
    report = json.loads(written['report'].read_text())
    c = report['centroid']
    assert c['matched'] == c['n_scored'] == 9
    assert c['missed'] == 2 and c['unmatched'] == 1
    assert c['pred_duplicates'] == 1 and c['truth_duplicates'] == 1 and c['duplicates'] == 2
    assert c['error_px_mean'] == pytest.approx(np.mean(errors), abs=1e-9)
    assert c['error_px_median'] == pytest.approx(np.median(errors), abs=1e-9)
    assert c['error_px_p95'] == pytest.approx(np.percentile(errors, 95), abs=1e-9)
    assert c['error_px_max'] == pytest.approx(max(errors), abs=1e-9)
    assert report['frames_seen'] == 12
    assert report['latency']['centroid']['n'] == 10    # every first answer whose image was seen
    assert written['centroid_error_hist'].is_file()
    assert written['centroid_contact_sheet'].is_file()
    worst = report['worst']['centroid'][0]
    assert worst['error_px'] == pytest.approx(max(errors), abs=1e-9)

    def figures():
        for msg in diagnostics.messages:
            for status in msg.status:
                if status.name.endswith('evaluation'):
                    values = {kv.key: kv.value for kv in status.values}
                    if values.get('centroid_matched') == '9':
                        return values
        return None
    values = wait_for(figures, what='eval figures on /diagnostics')
    assert float(values['centroid_error_mean_px']) == pytest.approx(np.mean(errors), abs=1e-4)
    assert values['centroid_missed'] == '2'


def test_eval_node_hazard_and_segmentation_exact(eval_graph):
    node, pubs, _ = eval_graph
    rng = np.random.default_rng(2)
    cm = np.zeros((4, 4), np.int64)
    inter = union = 0
    frame_ious = []
    for i in range(5):
        truth = rng.integers(0, 4, (12, 16)).astype(np.uint8)
        pred = truth.copy()
        flip = rng.random(truth.shape) < 0.3
        pred[flip] = rng.integers(0, 4, int(flip.sum()))
        pubs['segmentation_truth'].publish(image_from_array(truth, 'mono8', stamp=stamp(i)))
        ht = np.where(np.isin(truth, (1, 2)), 255, 0).astype(np.uint8)
        hp = np.where(np.isin(pred, (1, 2)), 255, 0).astype(np.uint8)
        pubs['hazard_truth'].publish(image_from_array(ht, 'mono8', stamp=stamp(i)))
        if i == 4:
            continue                                   # frame 4: no answer -> missed
        pubs['segmentation'].publish(image_from_array(pred, 'mono8', stamp=stamp(i)))
        pubs['hazard'].publish(image_from_array(hp, 'mono8', stamp=stamp(i)))
        if i == 1:
            pubs['hazard'].publish(image_from_array(hp, 'mono8', stamp=stamp(i)))
        for t in range(4):
            for p in range(4):
                cm[t, p] += int(np.sum((truth == t) & (pred == p)))
        a, b = int(np.sum((ht > 0) & (hp > 0))), int(np.sum((ht > 0) | (hp > 0)))
        inter, union = inter + a, union + b
        frame_ious.append(a / b)
    ev = node.evaluator
    wait_for(lambda: ev.segmentation.truth.received == 5 and ev.segmentation.pred.received == 4
             and ev.hazard.truth.received == 5 and ev.hazard.pred.received == 5,
             what='all masks at the evaluator')
    node.evaluator.finalize()
    s = node.summary()
    h, g = s['hazard'], s['segmentation']
    assert (h['matched'], h['missed'], h['pred_duplicates']) == (4, 1, 1)
    assert h['iou_pooled'] == pytest.approx(inter / union, abs=1e-12)
    assert h['iou_mean_per_frame'] == pytest.approx(np.mean(frame_ious), abs=1e-12)
    assert (g['matched'], g['missed']) == (4, 1)
    assert g['confusion'] == cm.tolist()
    tp = np.diag(cm)
    expected = tp / (cm.sum(0) + cm.sum(1) - tp)
    assert list(g['per_class_iou'].values()) == pytest.approx(list(expected), abs=1e-12)
    assert g['miou'] == pytest.approx(expected.mean(), abs=1e-12)


def test_eval_node_reads_compressed_images(tmp_path):
    """image_transport:=compressed: CompressedImage on image_topic/compressed is decoded for the
    thumbnails and the latency reference; a corrupt payload is rejected and counted, the node
    carries on."""
    from sensor_msgs.msg import CompressedImage
    from spacenav_perception.core.compressed_image import encode_compressed
    from spacenav_perception.nodes.eval_node import EvalNode
    init_rclpy()
    node = EvalNode(parameter_overrides=[
        Parameter('image_topic', value='/cam3/image'),
        Parameter('image_transport', value='compressed'),
        Parameter('qos_reliability', value='reliable'),
        Parameter('output_dir', value=str(tmp_path / 'eval')),
        Parameter('listen_diagnostics', value=False)])
    probe = make_node('eval_probe_c')
    pub = probe.create_publisher(CompressedImage, '/cam3/image/compressed', reliable_qos(20))
    truth = probe.create_publisher(PointStamped, '/centroid_truth', reliable_qos(20))
    pred = probe.create_publisher(PointStamped, '/centroid', reliable_qos(20))
    frames = {i: np.full((6, 9, 3), 40 * i, np.uint8) for i in range(3)}
    with ros_graph(node, probe, destroy=False):
        for p in (pub, truth, pred):
            wait_matched(p)
        for i, img in frames.items():
            fmt, data = encode_compressed(img, 'rgb8', 'png')
            msg = CompressedImage(format=fmt, data=data)
            msg.header.stamp = stamp(i)
            pub.publish(msg)
        bad = CompressedImage(format='png', data=b'not an image at all')
        bad.header.stamp = stamp(3)
        pub.publish(bad)
        ev = node.evaluator
        wait_for(lambda: ev.images.received == 4, what='compressed images at the evaluator')
        for i in frames:
            truth.publish(point(i, 1.0, 2.0))
            pred.publish(point(i, 1.0, 2.0 + i))
        wait_for(lambda: ev.centroid.pred.received == 3, what='answers at the evaluator')
        summary = node.summary()
    assert node.rejected == 1
    assert summary['frames_seen'] == 4
    assert summary['latency']['centroid']['n'] == 3
    for i, img in frames.items():
        _, thumb, _, shape = ev._image_seen[stamp_ns(i)]
        assert shape == (6, 9) and np.array_equal(thumb, img)    # PNG is lossless
    assert ev._image_seen[stamp_ns(3)][1] is None
    probe.destroy_node()
    node.destroy_node()
