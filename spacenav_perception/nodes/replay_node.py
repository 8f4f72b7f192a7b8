"""Replays a bag or a dataset folder as camera + ground-truth topics, at a steady rate.

    ros2 run spacenav_perception replay_node --ros-args -p path:=demo_out/bags/asteroid
    spacenav run --config replay bag:=demo_out/bags/asteroid --exit-when-done

Every frame is published as one group sharing one header stamp: the image, the CameraInfo and
the truths that the source has (/centroid_truth, /hazard_truth, /segmentation_truth). The
stamp is the publication time (`stamp_mode:=now`) or the recorded one (`stamp_mode:=recorded`).
Frames are read one at a time (bags through rosbags, dataset folders through OpenCV; see
bags/frame_sources.py), so any size of recording replays in constant memory.

Timing: `rate_hz` > 0 publishes at that fixed rate; `rate_hz` = 0 follows the recorded stamps,
sped up by the factor `rate` (2.0 = twice as fast). A wall timer drives publication; it is
re-created only when the recorded interval changes.

At the end the node loops (`loop:=true`) or stops, logs so, and sets `done` (a
threading.Event) so that `spacenav run --exit-when-done` ends the process; run as its own
process (`main`), it exits then.
"""
from __future__ import annotations

import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from spacenav_perception.bags import frame_sources as fs
from spacenav_perception.nodes.image_msgs import make_image
from spacenav_perception.nodes.params import NodeConfigError, choice, declare
from spacenav_perception.nodes.qos import image_qos

STAMP_MODES = ('now', 'recorded')

# name, default, description  (README parameter table comes from here)
PARAMETERS = (
    ('path', '', 'Bag directory / .mcap / .db3 file, or a dataset folder (asteroid: labels.csv '
                 '+ images/, lunar: images/render + masks) to replay'),
    ('rate_hz', 0.0, 'Fixed publication rate in frames per second; 0 = follow the recorded '
                     'stamps scaled by `rate`'),
    ('rate', 1.0, 'Speed factor on the recorded timing (used when rate_hz is 0): 2.0 = twice '
                  'as fast'),
    ('loop', False, 'Start again at start_index after the last frame instead of stopping'),
    ('start_index', 0, 'First frame to publish (0-based)'),
    ('end_index', -1, 'Last frame to publish (inclusive); -1 = to the end'),
    ('stamp_mode', 'now', 'Header stamp of each frame: now (publication time) or recorded '
                          '(the stamp in the bag / t0 + i / dataset_rate_hz for folders)'),
    ('qos_reliability', 'reliable', 'Publisher reliability: reliable or best_effort'),
    ('qos_depth', 10, 'Publisher queue depth (keep last N)'),
    ('image_topic', fs.IMAGE_TOPIC, 'Image output topic (sensor_msgs/Image); bags are read from '
                                    'this topic, or from its /compressed sibling '
                                    '(CompressedImage, decoded) when the bag has only that'),
    ('camera_info_topic', fs.CAMERA_INFO_TOPIC, 'CameraInfo output topic'),
    ('centroid_truth_topic', fs.CENTROID_TRUTH_TOPIC,
     'Centroid truth output topic (geometry_msgs/PointStamped, pixels)'),
    ('hazard_truth_topic', fs.HAZARD_TRUTH_TOPIC,
     'Hazard truth output topic (sensor_msgs/Image mono8, 255 = rock)'),
    ('segmentation_truth_topic', fs.SEGMENTATION_TRUTH_TOPIC,
     'Segmentation truth output topic (sensor_msgs/Image mono8 class ids)'),
    ('publish_truth', True, 'Publish the ground-truth topics'),
    ('frame_id', '', 'Header frame_id; empty = the recorded one (dataset folders: '
                     'camera_optical_frame)'),
    ('wait_for_subscribers', 0, 'Before the first frame, wait until this many subscriptions '
                                'match the image topic (0 = start at once)'),
    ('wait_for_truth_subscribers', 0, 'Before the first frame, also wait until this many '
                                      'subscriptions match each truth topic the source has'),
    ('wait_timeout_s', 30.0, 'Longest wait for subscribers; then start anyway with a warning'),
    ('progress_every', 0, 'Log progress every N frames; 0 = about every 10 %'),
    ('dataset_rate_hz', fs.DEFAULT_RATE_HZ, 'Dataset folders: frame rate of the synthetic '
                                            'recorded timeline'),
    ('masks', 'clean', 'Lunar dataset folders: truth masks, clean or ground'),
    ('fov_deg', 0.0, 'Dataset folders: horizontal field of view for CameraInfo; 0 = meta.csv '
                     'or the default (asteroid 5.5, lunar 60)'),
    ('strict', False, 'Stop at the first data problem instead of skipping the frame'),
    ('done_delay_s', 0.0, 'After the last frame, wait this long before signalling done (lets '
                          'downstream nodes answer the last frames before the process exits)'),
)


class ReplayNode(Node):
    """Publishes frames of a bag / dataset folder; `done` is set when the replay has ended."""
    DEFAULT_NAME = 'replay_node'

    def __init__(self, node_name: str = DEFAULT_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self.done = threading.Event()
        p = {name: declare(self, name, default, description)
             for name, default, description in PARAMETERS}
        self.params = p
        self._path = str(p['path'])
        if not self._path:
            raise NodeConfigError('parameter path is empty: give a bag or a dataset folder '
                                  '(-p path:=...)')
        self._stamp_mode = choice('stamp_mode', p['stamp_mode'], STAMP_MODES)
        if p['rate_hz'] < 0 or not p['rate'] > 0:
            raise NodeConfigError(f'rate_hz must be >= 0 and rate > 0 (got rate_hz='
                                  f'{p["rate_hz"]}, rate={p["rate"]})')
        if p['start_index'] < 0:
            raise NodeConfigError(f'start_index must be >= 0, got {p["start_index"]}')
        if 0 <= p['end_index'] < p['start_index']:
            raise NodeConfigError(f'end_index {p["end_index"]} < start_index '
                                  f'{p["start_index"]}')
        try:
            self._layout = fs.detect_layout(self._path)
        except fs.SourceError as exc:
            raise NodeConfigError(f'parameter path: {exc}') from None
        self._problems = fs.make_problems(bool(p['strict']))
        qos = image_qos(p['qos_reliability'], int(p['qos_depth']))
        self._pub_image = self.create_publisher(Image, p['image_topic'], qos)
        self._pub_info = self.create_publisher(CameraInfo, p['camera_info_topic'], qos)
        self._truth_pubs = {}
        if p['publish_truth']:
            # Only the truths the source has (so waiting for truth subscribers can end).
            if self._layout == 'bag':
                in_bag = fs.bag_topics(self._path)
                has = {'centroid': p['centroid_truth_topic'] in in_bag,
                       'hazard': p['hazard_truth_topic'] in in_bag,
                       'segmentation': p['segmentation_truth_topic'] in in_bag}
            else:
                lunar = self._layout == 'lunar'
                has = {'centroid': not lunar, 'hazard': lunar, 'segmentation': lunar}
            if has['centroid']:
                self._truth_pubs['centroid'] = self.create_publisher(
                    PointStamped, p['centroid_truth_topic'], qos)
            for key in ('hazard', 'segmentation'):
                if has[key]:
                    self._truth_pubs[key] = self.create_publisher(
                        Image, p[f'{key}_truth_topic'], qos)

        self.published = 0            # frames published in total (all passes)
        self.passes = 0               # completed passes
        self._pass_frames = 0
        self._total = self._count_frames()
        every = int(p['progress_every'])
        self._progress_every = every if every > 0 else max(1, (self._total or 100) // 10)
        self._frames = None
        self._next = None
        self._prev_stamp_ns = None
        self._timer = None
        self._period = None
        self._wait_started = time.monotonic()
        self._started = None
        self._stopping = False
        self.get_logger().info(
            f'replaying {self._layout} {self._path} ({self._total if self._total is not None else "?"} '
            f'frames, {self._timing_text()}, stamps {self._stamp_mode}, '
            f'loop {"on" if p["loop"] else "off"})')
        self._health = self._make_health()
        if p['wait_for_subscribers'] > 0 or p['wait_for_truth_subscribers'] > 0:
            self._timer = self.create_timer(0.05, self._wait_tick)
        else:
            self._begin()

    # ------------------------------------------------------------------ set-up helpers

    def _timing_text(self) -> str:
        if self.params['rate_hz'] > 0:
            return f'{self.params["rate_hz"]:g} Hz'
        return f'recorded timing x{self.params["rate"]:g}'

    def _count_frames(self):
        p = self.params
        try:
            if self._layout == 'bag':
                n = fs.bag_frame_count(self._path, p['image_topic'])
            else:
                n = fs.count_dataset_frames(self._path, p['masks'])
        except Exception:  # noqa: BLE001 - counting is only for progress
            return None
        if n is None:
            return None
        end = p['end_index']
        if end >= 0:
            n = min(n, end + 1)
        return max(0, n - p['start_index'])

    def _open(self):
        p = self.params
        kwargs = dict(start_index=p['start_index'], end_index=p['end_index'],
                      problems=self._problems)
        if self._layout == 'bag':
            kwargs.update(image_topic=p['image_topic'],
                          camera_info_topic=p['camera_info_topic'],
                          centroid_truth_topic=p['centroid_truth_topic'],
                          hazard_truth_topic=p['hazard_truth_topic'],
                          segmentation_truth_topic=p['segmentation_truth_topic'])
        else:
            kwargs.update(rate_hz=p['dataset_rate_hz'], masks=p['masks'],
                          fov_deg=p['fov_deg'] if p['fov_deg'] > 0 else None,
                          t0_ns=0)
        return fs.open_frames(self._path, **kwargs)

    def _make_health(self):
        """/diagnostics at 1 Hz: state, frames published, passes, problems."""
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        return self.create_timer(1.0, self._publish_health)

    def _publish_health(self):
        state = 'done' if self.done.is_set() else ('waiting for subscribers'
                                                    if self._started is None else 'replaying')
        values = {'path': self._path, 'state': state, 'frames_published': self.published,
                  'frames_this_pass': self._pass_frames, 'passes_completed': self.passes,
                  'frames_total': '' if self._total is None else self._total,
                  'data_problems': len(self._problems)}
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [DiagnosticStatus(level=DiagnosticStatus.OK,
                                       name=f'{self.get_name()}: replay', message=state,
                                       values=[KeyValue(key=k, value=str(v))
                                               for k, v in values.items()])]
        self._diag_pub.publish(msg)

    # ------------------------------------------------------------------ run

    def _wait_tick(self):
        p = self.params
        need_img = p['wait_for_subscribers']
        need_truth = p['wait_for_truth_subscribers']
        have_img = self._pub_image.get_subscription_count()
        truth_ok = all(pub.get_subscription_count() >= need_truth
                       for pub in self._truth_pubs.values())
        waited = time.monotonic() - self._wait_started
        if have_img >= need_img and truth_ok:
            self.get_logger().info(f'{have_img} subscriber(s) on {p["image_topic"]}: starting')
        elif waited > p['wait_timeout_s']:
            self.get_logger().warning(
                f'waited {waited:.1f} s for {need_img} subscriber(s) on {p["image_topic"]} '
                f'(have {have_img}) and {need_truth} per truth topic: starting anyway')
        else:
            return
        self._timer.cancel()      # the replay timer replaces it (cancelled, not destroyed
        self._timer = None        # from inside its own callback)
        self._begin()

    def _begin(self):
        self._started = time.monotonic()
        self._frames = self._open()
        self._next = self._read_next()
        if self._next is None:
            self._finish_pass()
            if self._stopping:
                return
        self._publish_and_schedule()

    def _read_next(self):
        try:
            return next(self._frames)
        except StopIteration:
            return None
        except Exception as exc:  # noqa: BLE001 - strict-mode data problem or reader failure
            self.get_logger().error(f'replay stopped: {exc}')
            self._stop(f'replay stopped by an error after {self.published} frames')
            return None

    def _set_period(self, period: float):
        """Publish the next frame `period` s after the previous one (one timer, re-timed)."""
        period = max(period, 1e-4)
        if self._timer is not None and self._period is not None \
                and abs(period - self._period) <= 0.01 * self._period:
            return
        self._period = period
        if self._timer is None:
            self._timer = self.create_timer(period, self._tick)
        else:
            self._timer.timer_period_ns = int(period * 1e9)
            self._timer.reset()

    def _tick(self):
        if self.done.is_set() or self._stopping:
            return
        self._publish_and_schedule()

    def _publish_and_schedule(self):
        frame = self._next
        if frame is None:
            return
        self._publish(frame)
        self._next = self._read_next()
        if self._stopping:
            return
        if self._next is None:
            self._finish_pass()
            if self._stopping:
                return
        # Interval to the next frame.
        if self.params['rate_hz'] > 0:
            period = 1.0 / self.params['rate_hz']
        else:
            delta = (self._next.stamp_ns - frame.stamp_ns) if self._next is not None else 0
            if delta <= 0:   # loop wrap or equal stamps: keep the current spacing
                period = self._period or 0.1
            else:
                period = delta * 1e-9 / self.params['rate']
        self._set_period(period)

    def _header(self, frame) -> Header:
        header = Header()
        if self._stamp_mode == 'now':
            header.stamp = self.get_clock().now().to_msg()
        else:
            header.stamp.sec, header.stamp.nanosec = frame.stamp
        header.frame_id = self.params['frame_id'] or frame.frame_id or fs.DEFAULT_FRAME_ID
        return header

    def _publish(self, frame):
        header = self._header(frame)
        # Truth first, then camera info, the image last: a node answering the image cannot
        # overtake the truth it is compared with.
        if 'centroid' in self._truth_pubs and frame.centroid is not None:
            msg = PointStamped()
            msg.header = header
            msg.point.x, msg.point.y = float(frame.centroid[0]), float(frame.centroid[1])
            self._truth_pubs['centroid'].publish(msg)
        if 'hazard' in self._truth_pubs and frame.hazard is not None:
            self._truth_pubs['hazard'].publish(make_image(header, frame.hazard, 'mono8'))
        if 'segmentation' in self._truth_pubs and frame.segmentation is not None:
            self._truth_pubs['segmentation'].publish(
                make_image(header, frame.segmentation, 'mono8'))
        if frame.camera is not None:
            info = CameraInfo()
            info.header = header
            for key, value in frame.camera.camera_info_fields().items():
                setattr(info, key, value)
            self._pub_info.publish(info)
        self._pub_image.publish(make_image(header, frame.image, frame.encoding))
        self.published += 1
        self._pass_frames += 1
        if self._pass_frames % self._progress_every == 0:
            total = self._total
            pct = f' ({100.0 * self._pass_frames / total:.0f} %)' if total else ''
            self.get_logger().info(f'published {self._pass_frames}/{total if total else "?"} '
                                   f'frames{pct}')

    def _finish_pass(self):
        self.passes += 1
        n = self._pass_frames
        if self._problems and not getattr(self, '_summary_logged', False):
            self.get_logger().warning(self._problems.summary())
            self._summary_logged = True
        if n == 0:
            self._stop(f'no frames to replay in {self._path}')
            return
        if self.params['loop']:
            self.get_logger().info(f'pass {self.passes} done ({n} frames): looping')
            self._pass_frames = 0
            self._frames = self._open()
            self._next = self._read_next()
            if self._next is None:
                self._stop('no frames on the next pass: stopping')
            return
        elapsed = time.monotonic() - (self._started or time.monotonic())
        self._stop(f'replay finished: {n} frames from {self._path} in {elapsed:.1f} s; stopping')

    def _stop(self, message: str):
        if self.done.is_set() or self._stopping:
            return
        self._stopping = True
        self.get_logger().info(message)
        if self._timer is not None:
            self._timer.cancel()
        delay = float(self.params['done_delay_s'])
        if delay > 0:
            self._done_timer = self.create_timer(delay, self._set_done)
        else:
            self.done.set()

    def _set_done(self):
        self._done_timer.cancel()
        self.done.set()


def main(args=None):
    """Console script: replay, then exit once the replay has ended (unless looping)."""
    from spacenav_perception.graph.runner import run_node
    return run_node(ReplayNode, args, exit_when_done=True)


if __name__ == '__main__':
    raise SystemExit(main())
