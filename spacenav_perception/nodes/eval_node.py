"""eval_node: live accuracy and latency of the perception nodes against replayed ground truth.

Subscribes:  /centroid (geometry_msgs/PointStamped) + /centroid_truth
             /hazard_mask (mono8 0/255) + /hazard_truth
             /segmentation (mono8 class ids) + /segmentation_truth
             /camera/image_raw (thumbnails for the pictures, latency reference; or
             /camera/image_raw/compressed, CompressedImage, with image_transport:=compressed)
             /diagnostics (the nodes' own latency figures, kept for the report)
Publishes:   /diagnostics  running figures at 1 Hz (frames matched, centroid mean / median /
             p95 px, hazard IoU, segmentation mIoU + per-class IoU, missed / unmatched /
             duplicate counts, answer latency p50 / p95)
Writes:      at shutdown (destroy_node, e.g. when `spacenav run --exit-when-done` stops after
             the replay) or on write_outputs(): `report_path` (JSON) and pictures in
             `output_dir` (centroid_contact_sheet.png, centroid_worst.png,
             centroid_error_hist.png, hazard_overlays.png, hazard_worst.png).

Matching is by header stamp with bounded buffers; see evaluation/online_metrics.py for the
exact definitions (matched, missed, unmatched, duplicates, late, evicted). A frame whose truth
arrived but whose prediction never did (e.g. "no target") counts as missed.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile
from sensor_msgs.msg import CompressedImage, Image

from spacenav_perception.core.image_codec import ImageRejected, to_rgb_u8
from spacenav_perception.evaluation import online_metrics as om
from spacenav_perception.nodes.image_msgs import decompress, image_to_array
from spacenav_perception.nodes.image_node import TRANSPORTS
from spacenav_perception.nodes.params import NodeConfigError, declare
from spacenav_perception.nodes.qos import RELIABILITY
from spacenav_perception.nodes.params import choice

MAX_PIXELS = 8192 * 8192

# name, default, description  (README parameter table comes from here)
PARAMETERS = (
    ('image_topic', '/camera/image_raw', 'Camera images (thumbnails for the pictures; '
                                         'reference time for the answer latency)'),
    ('image_transport', 'raw', 'raw: sensor_msgs/Image on image_topic; compressed: '
                               'sensor_msgs/CompressedImage (PNG or JPEG) on image_topic + '
                               '/compressed, as the perception nodes read it'),
    ('centroid_topic', '/centroid', 'Centroid predictions (geometry_msgs/PointStamped)'),
    ('centroid_truth_topic', '/centroid_truth', 'Centroid truth (geometry_msgs/PointStamped)'),
    ('hazard_topic', '/hazard_mask', 'Hazard mask predictions (mono8, non-zero = hazard)'),
    ('hazard_truth_topic', '/hazard_truth', 'Hazard truth (mono8, non-zero = hazard)'),
    ('segmentation_topic', '/segmentation', 'Class-id predictions (mono8)'),
    ('segmentation_truth_topic', '/segmentation_truth', 'Class-id truth (mono8)'),
    ('class_names', list(om.DEFAULT_CLASS_NAMES), 'Segmentation class names, index = class id'),
    ('qos_reliability', 'best_effort', 'Subscription reliability: best_effort (matches any '
                                       'publisher) or reliable (lossless, needs reliable '
                                       'publishers)'),
    ('qos_depth', 50, 'Subscription queue depth per topic (keep last N)'),
    ('max_pending', 200, 'Unmatched messages kept per topic; beyond, the oldest is evicted '
                         'and counted (a truth as missed)'),
    ('match_timeout_s', 10.0, 'A truth still without prediction after this many seconds counts '
                              'as missed (0 = only at shutdown)'),
    ('output_dir', 'eval_out', 'Directory for the pictures'),
    ('report_path', '', 'JSON report file; empty = OUTPUT_DIR/report.json'),
    ('worst_k', 6, 'Worst frames kept (with thumbnails) per task for the pictures'),
    ('samples', 12, 'First matched frames kept per task for the contact sheets'),
    ('thumbnail_size', 256, 'Longest side of the kept thumbnails in pixels'),
    ('write_pictures', True, 'Write pictures next to the report'),
    ('listen_diagnostics', True, "Keep the other nodes' /diagnostics values for the report"),
)


class EvalNode(Node):
    DEFAULT_NAME = 'eval_node'

    def __init__(self, node_name: str = DEFAULT_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        p = {name: declare(self, name, default, description)
             for name, default, description in PARAMETERS}
        self.params = p
        reliability = RELIABILITY[choice('qos_reliability', p['qos_reliability'],
                                         tuple(RELIABILITY))]
        if p['qos_depth'] < 1 or p['max_pending'] < 1:
            raise NodeConfigError('qos_depth and max_pending must be >= 1')
        timeout = float(p['match_timeout_s'])
        self.evaluator = om.OnlineEvaluator(
            max_pending=int(p['max_pending']), timeout_s=timeout if timeout > 0 else None,
            class_names=list(p['class_names']), worst_k=int(p['worst_k']),
            samples=int(p['samples']), thumb_max_side=int(p['thumbnail_size']))
        self.output_dir = Path(p['output_dir'])
        self.report_path = Path(p['report_path']) if p['report_path'] else \
            self.output_dir / 'report.json'
        self._written = threading.Lock()
        self._outputs = None
        self._qos_warned = set()
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(p['qos_depth']),
                         reliability=reliability, durability=DurabilityPolicy.VOLATILE)
        ev = self.evaluator
        self._sub(PointStamped, p['centroid_topic'],
                  lambda m: ev.add_centroid_pred(_stamp(m), (m.point.x, m.point.y), _now()), qos)
        self._sub(PointStamped, p['centroid_truth_topic'],
                  lambda m: ev.add_centroid_truth(_stamp(m), (m.point.x, m.point.y), _now()),
                  qos)
        self._sub(Image, p['hazard_topic'],
                  lambda m: self._on_mask(m, ev.add_hazard_pred), qos)
        self._sub(Image, p['hazard_truth_topic'],
                  lambda m: self._on_mask(m, ev.add_hazard_truth), qos)
        self._sub(Image, p['segmentation_topic'],
                  lambda m: self._on_mask(m, ev.add_segmentation_pred), qos)
        self._sub(Image, p['segmentation_truth_topic'],
                  lambda m: self._on_mask(m, ev.add_segmentation_truth), qos)
        # The image subscription last: a replay waiting for image subscribers then finds the
        # truth subscriptions (created first) matched too.
        self.compressed = choice('image_transport', p['image_transport'],
                                 TRANSPORTS) == 'compressed'
        self.image_topic = (p['image_topic'].rstrip('/') + '/compressed' if self.compressed
                            else p['image_topic'])
        self._sub(CompressedImage if self.compressed else Image, self.image_topic,
                  self._on_image, qos)
        self.rejected = 0
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        if p['listen_diagnostics']:
            self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 50)
        self._timer = self.create_timer(1.0, self._tick)
        self.get_logger().info(
            f'evaluating {p["centroid_topic"]} vs {p["centroid_truth_topic"]}, '
            f'{p["hazard_topic"]} vs {p["hazard_truth_topic"]}, {p["segmentation_topic"]} vs '
            f'{p["segmentation_truth_topic"]}; report -> {self.report_path}')

    # ------------------------------------------------------------------ subscriptions

    def _sub(self, msg_type, topic, callback, qos):
        callbacks = SubscriptionEventCallbacks(
            incompatible_qos=lambda event, t=topic: self._incompatible(t, event))
        return self.create_subscription(msg_type, topic, callback, qos,
                                        event_callbacks=callbacks)

    def _incompatible(self, topic, event):
        if topic in self._qos_warned:
            return
        self._qos_warned.add(topic)
        self.get_logger().warning(
            f'{topic}: a publisher offers a QoS this subscription cannot match '
            f'(policy {event.last_policy_kind}); its messages are not evaluated. Use '
            f'qos_reliability:=best_effort here or make the publisher reliable.')

    def _on_image(self, msg):
        now = _now()
        try:
            if self.compressed:
                image, array = decompress(msg, MAX_PIXELS)
            else:
                image, array = msg, image_to_array(msg, MAX_PIXELS)
            rgb = to_rgb_u8(array, image.encoding) if self.evaluator.keep_thumbnails else None
        except ImageRejected as exc:
            self._reject(msg, exc)
            self.evaluator.add_image(_stamp(msg), None, now)
            return
        self.evaluator.add_image(_stamp(msg), rgb, now, shape=array.shape[:2])

    def _on_mask(self, msg: Image, add):
        now = _now()
        try:
            array = image_to_array(msg, MAX_PIXELS)
        except ImageRejected as exc:
            self._reject(msg, exc)
            return
        if array.ndim != 2:
            self._reject(msg, ImageRejected('unsupported_encoding',
                                            f'mask encoding {msg.encoding} is not single-channel'))
            return
        add(_stamp(msg), array, now)

    def _reject(self, msg, exc):
        self.rejected += 1
        if self.rejected == 1 or self.rejected % 100 == 0:
            kind = getattr(msg, 'encoding', None) or f'compressed ({msg.format})'
            self.get_logger().warning(f'rejected a {kind} frame ({exc.reason}): {exc} '
                                      f'[{self.rejected} so far]')

    def _on_diagnostics(self, msg: DiagnosticArray):
        for status in msg.status:
            if status.name.startswith(self.get_name() + ':'):
                continue
            self.evaluator.add_node_diagnostics(
                status.name, {kv.key: kv.value for kv in status.values})

    # ------------------------------------------------------------------ figures

    def summary(self) -> dict:
        return self.evaluator.summary()

    def _tick(self):
        self.evaluator.expire(_now())
        self._diag_pub.publish(self._diagnostics())

    def _diagnostics(self) -> DiagnosticArray:
        s = self.evaluator.summary()
        c, h, g, lat = s['centroid'], s['hazard'], s['segmentation'], s['latency']
        values = [('frames_seen', s['frames_seen']),
                  ('centroid_matched', c['matched']), ('centroid_missed', c['missed']),
                  ('centroid_unmatched', c['unmatched']),
                  ('centroid_duplicates', c['duplicates']),
                  ('centroid_error_mean_px', _f(c['error_px_mean'])),
                  ('centroid_error_median_px', _f(c['error_px_median'])),
                  ('centroid_error_p95_px', _f(c['error_px_p95'])),
                  ('hazard_matched', h['matched']), ('hazard_missed', h['missed']),
                  ('hazard_unmatched', h['unmatched']), ('hazard_duplicates', h['duplicates']),
                  ('hazard_iou', _f(h['iou_pooled'])),
                  ('segmentation_matched', g['matched']),
                  ('segmentation_missed', g['missed']),
                  ('segmentation_miou', _f(g['miou']))]
        values += [(f'segmentation_iou.{name}', _f(v))
                   for name, v in g['per_class_iou'].items()]
        for task in ('centroid', 'hazard', 'segmentation'):
            if lat[task]['n']:
                values += [(f'{task}_latency_p50_ms', _f(lat[task]['p50_ms'])),
                           (f'{task}_latency_p95_ms', _f(lat[task]['p95_ms']))]
        values.append(('rejected', self.rejected))
        missed = c['missed'] + h['missed'] + g['missed']
        level = DiagnosticStatus.WARN if missed or self.rejected else DiagnosticStatus.OK
        message = (f'{c["matched"]} centroid, {h["matched"]} hazard, {g["matched"]} segmentation '
                   f'frames matched; {missed} missed')
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [DiagnosticStatus(level=level, name=f'{self.get_name()}: evaluation',
                                       message=message, hardware_id='',
                                       values=[KeyValue(key=k, value=str(v))
                                               for k, v in values])]
        return msg

    def write_outputs(self, final: bool = True) -> dict:
        """Finalise (pending truths -> missed) and write the report and the pictures.

        Returns {'report': path, name: path, ...}. Called once at shutdown; callable earlier.
        """
        with self._written:
            if final:
                self.evaluator.finalize()
            written = {'report': om.write_report(
                self.evaluator, self.report_path,
                extra={'parameters': {k: v for k, v in self.params.items()},
                       'rejected_frames': self.rejected})}
            if self.params['write_pictures']:
                written.update({k: Path(v) for k, v in
                                om.write_pictures(self.evaluator, self.output_dir).items()})
            self._outputs = written
        return written

    def destroy_node(self):
        if self._outputs is None:
            try:
                written = self.write_outputs()
                self.get_logger().info('evaluation written: ' + ', '.join(
                    str(path) for path in written.values()))
            except Exception as exc:  # noqa: BLE001 - never lose the shutdown over a picture
                self.get_logger().error(f'writing the evaluation failed: {exc}')
        return super().destroy_node()


def _stamp(msg) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def _now() -> float:
    return time.monotonic()


def _f(value) -> str:
    return 'nan' if value is None or value != value else f'{value:.4f}'


def main(args=None):
    from spacenav_perception.graph.runner import run_node
    return run_node(EvalNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
