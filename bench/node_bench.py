"""End-to-end node benchmark across processes over DDS.

The node under test runs as its own process (console script, ``--ros-args -p ...``); this
process publishes images (header stamp = wall clock at publication) and subscribes to the
node's output. Latency = receipt time of the answer minus the stamp of the frame it answers
(the node copies the input header to its output), both from ``time.time_ns()`` on this machine.

Per target node (centroid_node on 1024x1024 mono8, hazard_node on 720x480 rgb8):
1. start the target and a passthrough_node (same image size) side by side, wait until both
   are discovered and have answered a warm-up frame;
2. latency run of the passthrough (30 Hz), then stop it;
3. latency run of the target (30 Hz): p50 / p95 / max, lost = published frames never answered;
4. overload run of the target (200 Hz): answered, dropped, p95 / max, node RSS before / after
   (psutil, process and its children) and the peak seen while it ran.

ROS must be initialised by the caller (``runner`` sets the domain first).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import log, percentile

IGNORED_TOPICS = ('/rosout', '/parameter_events', '/diagnostics')
TYPE_POINT = 'geometry_msgs/msg/PointStamped'
TYPE_IMAGE = 'sensor_msgs/msg/Image'
# target node -> (frame kind, output type, preferred output topic, model name)
TARGETS = {
    'centroid_node': ('asteroid', TYPE_POINT, '/centroid', 'centroid'),
    'hazard_node': ('lunar', TYPE_IMAGE, '/hazard_mask', 'hazard'),
}


@dataclass
class NodeBenchConfig:
    rate_hz: float = 30.0
    duration_s: float = 30.0
    overload_rate_hz: float = 200.0
    overload_duration_s: float = 20.0
    drain_s: float = 1.0
    start_timeout_s: float = 120.0
    qos_reliability: str = 'reliable'
    qos_depth: int = 1
    device: str = 'cpu'


def executable(name: str) -> str:
    """The console script beside this interpreter (the venv's bin), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f'console script {name!r} not found beside {sys.executable} or '
                                'on PATH (install the package: pip install -e .)')
    return found


class NodeProcess:
    """A node started as its own process; its output goes to a log file."""

    def __init__(self, script: str, node_name: str, params: dict, log_dir: Path):
        self.name = node_name
        self.log_path = log_dir / f'{node_name}.log'
        cmd = [executable(script), '--ros-args', '-r', f'__node:={node_name}']
        for key, value in params.items():
            cmd += ['-p', f'{key}:={value}']
        self.cmd = cmd
        self._log = open(self.log_path, 'wb')
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=os.environ.copy())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors='replace').splitlines()
        except OSError:
            return ''
        return '\n'.join(text[-lines:])

    def rss_mb(self) -> float:
        import psutil
        try:
            p = psutil.Process(self.proc.pid)
            total = p.memory_info().rss
            for child in p.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            return total / 2 ** 20
        except psutil.Error:
            return float('nan')

    def stop(self, timeout: float = 5.0) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(3)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(3)
        self._log.close()


class Probe:
    """Publisher of test frames and subscriber of one node's answers (in the bench process)."""

    def __init__(self, node, image_topic: str, frames, encoding: str):
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from spacenav_perception.nodes.image_msgs import image_from_array
        self.node = node
        self.image_topic = image_topic
        # Reliable keep-last-1 matches both best-effort and reliable image subscriptions.
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
        from sensor_msgs.msg import Image
        self.pub = node.create_publisher(Image, image_topic, qos)
        self.msgs = [image_from_array(f, encoding, frame_id='bench') for f in frames]
        self.lock = threading.Lock()
        self.received = {}
        self.sub = None
        self.count = 0

    def attach_output(self, topic: str, msg_type: str) -> None:
        """Subscribe to `topic` with the reliability its publisher offers."""
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        if self.sub is not None:
            self.node.destroy_subscription(self.sub)
        infos = self.node.get_publishers_info_by_topic(topic)
        reliable = bool(infos) and all(
            i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200,
                         reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.VOLATILE)
        cls = _message_class(msg_type)
        self.sub = self.node.create_subscription(cls, topic, self._on_answer, qos)
        self.output_topic = topic
        self.output_reliability = 'reliable' if reliable else 'best_effort'

    def _on_answer(self, msg) -> None:
        now = time.time_ns()
        key = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.received.setdefault(key, now)

    def reset(self) -> None:
        with self.lock:
            self.received = {}

    def answered(self) -> int:
        with self.lock:
            return len(self.received)

    def publish(self) -> int:
        msg = self.msgs[self.count % len(self.msgs)]
        self.count += 1
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        self.pub.publish(msg)
        return now


def _message_class(msg_type: str):
    if msg_type == TYPE_POINT:
        from geometry_msgs.msg import PointStamped
        return PointStamped
    from sensor_msgs.msg import Image
    return Image


def find_output(node, proc: NodeProcess, want_type: str, preferred: str | None,
                exclude: tuple, timeout: float) -> str:
    """The topic of type `want_type` that `proc`'s node publishes (preferred name first)."""
    deadline = time.monotonic() + timeout
    seen_since = None
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f'{proc.name} exited with code {proc.proc.returncode} during '
                               f'start-up:\n{proc.tail()}')
        try:
            pubs = node.get_publisher_names_and_types_by_node(proc.name, '/')
        except Exception:  # NodeNameNonExistentError until discovery sees it
            pubs = []
        cands = [t for t, types in pubs if want_type in types
                 and t not in IGNORED_TOPICS and t not in exclude]
        if preferred in cands:
            return preferred
        if cands:
            seen_since = seen_since or time.monotonic()
            if time.monotonic() - seen_since > 1.0:
                return sorted(cands)[0]
        time.sleep(0.1)
    raise TimeoutError(f'{proc.name} did not advertise a {want_type} topic within {timeout:.0f} s'
                       f' (command: {" ".join(proc.cmd)}):\n{proc.tail()}')


def wait_ready(probe: Probe, proc: NodeProcess, timeout: float) -> None:
    """Until the node's image subscription matched and it answered a warm-up frame."""
    deadline = time.monotonic() + timeout
    while probe.pub.get_subscription_count() < 1:
        if not proc.alive() or time.monotonic() > deadline:
            raise RuntimeError(f'{proc.name} never subscribed to {probe.image_topic}:\n'
                               f'{proc.tail()}')
        time.sleep(0.05)
    probe.reset()
    while probe.answered() < 3:
        if not proc.alive():
            raise RuntimeError(f'{proc.name} exited with code {proc.proc.returncode}:\n'
                               f'{proc.tail()}')
        if time.monotonic() > deadline:
            raise TimeoutError(f'{proc.name} did not answer warm-up frames on '
                               f'{probe.output_topic} within {timeout:.0f} s:\n{proc.tail()}')
        probe.publish()
        time.sleep(0.1)
    time.sleep(0.3)


def drive(probe: Probe, rate_hz: float, duration_s: float) -> list:
    """Publish at `rate_hz` for `duration_s` on a fixed schedule; returns the stamps (ns)."""
    n = max(1, int(round(rate_hz * duration_s)))
    period = 1.0 / rate_hz
    stamps = []
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i * period - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        stamps.append(probe.publish())
    return stamps


def drain(probe: Probe, quiet_s: float, limit_s: float = 10.0) -> None:
    """Wait until no new answer arrived for `quiet_s` (at most `limit_s`)."""
    end = time.monotonic() + limit_s
    last, last_change = probe.answered(), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.05)
        now = probe.answered()
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change >= quiet_s:
            return


def measure(probe: Probe, rate_hz: float, duration_s: float, quiet_s: float) -> dict:
    probe.reset()
    t0 = time.perf_counter()
    stamps = drive(probe, rate_hz, duration_s)
    elapsed = time.perf_counter() - t0
    drain(probe, quiet_s)
    with probe.lock:
        received = dict(probe.received)
    lat = np.array([(received[s] - s) / 1e6 for s in stamps if s in received])
    return {'published': len(stamps), 'answered': int(lat.size),
            'publish_rate_hz': round(len(stamps) / max(elapsed, 1e-9), 1),
            'p50_ms': round(percentile(lat, 50), 3), 'p95_ms': round(percentile(lat, 95), 3),
            'max_ms': round(float(lat.max()), 3) if lat.size else float('nan')}


class RssSampler(threading.Thread):
    def __init__(self, proc: NodeProcess, period: float = 0.2):
        super().__init__(daemon=True)
        self.proc, self.period, self.peak = proc, period, 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            value = self.proc.rss_mb()
            if value == value:  # not NaN
                self.peak = max(self.peak, value)
            self._stop_event.wait(self.period)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.peak


def run_node_bench(cfg: NodeBenchConfig, model_files: dict, predictor_p50: dict, frames: dict,
                   progress=None) -> tuple[list, list, list]:
    """-> (nodes rows, overload rows, errors).

    model_files: model name -> (path, engine name); predictor_p50: model name -> ms or None;
    frames: kind -> (list of arrays, encoding).
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from spacenav_perception.graph.runner import ExecutorThread
    node = rclpy.create_node(f'spacenav_bench_{os.getpid()}')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = ExecutorThread(executor, name='bench-executor').start()
    log_dir = Path(tempfile.mkdtemp(prefix='spacenav_bench_nodes_'))
    nodes_rows, overload_rows, errors = [], [], []
    tag = os.getpid()
    qos_params = {'qos_reliability': cfg.qos_reliability, 'qos_depth': cfg.qos_depth}
    try:
        for target, (kind, out_type, preferred, model) in TARGETS.items():
            if model not in model_files:   # not selected (--models) or no file (runner said so)
                continue
            model_path, engine_name = model_files[model]
            imgs, enc = frames[kind]
            procs = []
            pt_probe = tg_probe = None
            t_start = time.monotonic()
            try:
                pt_topic = f'/bench_{tag}/{target}/passthrough_in'
                pt_out = f'/bench_{tag}/{target}/passthrough_out'
                tg_topic = f'/bench_{tag}/{target}/image'
                # min_confidence 0: every frame is answered (untrained models are unsure).
                extra = {'min_confidence': 0.0} if target == 'centroid_node' else {}
                pt = NodeProcess('passthrough_node', f'bench_passthrough_{tag}_{kind}',
                                 {'image_topic': pt_topic, 'output_topic': pt_out, **qos_params},
                                 log_dir)
                procs.append(pt)
                tg = NodeProcess(target, f'bench_{target}_{tag}',
                                 {'image_topic': tg_topic, 'model_path': model_path,
                                  'engine': engine_name,   # this file, not engine auto
                                  'device': cfg.device, 'precision': 'auto', **extra,
                                  **qos_params}, log_dir)
                procs.append(tg)
                pt_probe = Probe(node, pt_topic, imgs, enc)
                tg_probe = Probe(node, tg_topic, imgs, enc)
                pt_probe.attach_output(find_output(node, pt, TYPE_IMAGE, pt_out, (pt_topic,),
                                                   cfg.start_timeout_s), TYPE_IMAGE)
                tg_probe.attach_output(find_output(node, tg, out_type, preferred, (tg_topic,),
                                                   cfg.start_timeout_s), out_type)
                wait_ready(pt_probe, pt, cfg.start_timeout_s)
                wait_ready(tg_probe, tg, cfg.start_timeout_s)
                log(f'[bench] {target} and passthrough ready after '
                    f'{time.monotonic() - t_start:.1f} s')

                pt_res = measure(pt_probe, cfg.rate_hz, cfg.duration_s, cfg.drain_s)
                pt.stop()
                if progress:
                    progress(f'{target} passthrough')
                res = measure(tg_probe, cfg.rate_hz, cfg.duration_s, cfg.drain_s)
                if progress:
                    progress(f'{target} latency')
                pred = predictor_p50.get(model)
                row = {'node': target, 'p50_ms': res['p50_ms'], 'p95_ms': res['p95_ms'],
                       'max_ms': res['max_ms'], 'lost': res['published'] - res['answered'],
                       'passthrough_p50_ms': pt_res['p50_ms'],
                       'predictor_p50_ms': pred if pred is not None else float('nan'),
                       'published': res['published'], 'answered': res['answered'],
                       'rate_hz': cfg.rate_hz, 'publish_rate_hz': res['publish_rate_hz'],
                       'duration_s': cfg.duration_s,
                       'passthrough_lost': pt_res['published'] - pt_res['answered'],
                       'passthrough_p95_ms': pt_res['p95_ms'],
                       'model': model, 'engine': engine_name, 'device': cfg.device,
                       'model_path': str(model_path),
                       'frame': f'{imgs[0].shape[1]}x{imgs[0].shape[0]} {enc}',
                       'qos_reliability': cfg.qos_reliability, 'qos_depth': cfg.qos_depth,
                       'output_topic': tg_probe.output_topic}
                if pred is not None:
                    budget = pt_res['p50_ms'] + pred + 2.0
                    row['overhead_budget_ms'] = round(budget, 3)
                    row['overhead_ok'] = bool(res['p50_ms'] <= budget)
                    # Only meaningful when the node keeps up with the rate: otherwise frames wait
                    # for the previous one (latest-frame worker) and that wait is in the latency.
                    row['overhead_check_valid'] = row['lost'] == 0
                nodes_rows.append(row)

                time.sleep(0.5)
                rss_before = tg.rss_mb()
                sampler = RssSampler(tg)
                sampler.start()
                ov = measure(tg_probe, cfg.overload_rate_hz, cfg.overload_duration_s,
                             cfg.drain_s)
                peak = sampler.stop()
                rss_after = tg.rss_mb()
                if progress:
                    progress(f'{target} overload')
                overload_rows.append({
                    'node': target, 'answered': ov['answered'],
                    'dropped': ov['published'] - ov['answered'], 'p95_ms': ov['p95_ms'],
                    'max_ms': ov['max_ms'], 'rss_before_mb': round(rss_before, 1),
                    'rss_after_mb': round(rss_after, 1), 'rss_peak_mb': round(peak, 1),
                    'published': ov['published'], 'rate_hz': cfg.overload_rate_hz,
                    'publish_rate_hz': ov['publish_rate_hz'],
                    'duration_s': cfg.overload_duration_s, 'p50_ms': ov['p50_ms'],
                    'answer_rate_hz': round(ov['answered'] / cfg.overload_duration_s, 1),
                    'alive_after': tg.alive()})
            except Exception as exc:  # report and go on with the next target
                errors.append(f'{target}: {type(exc).__name__}: {exc}')
                log(f'[bench] {target} failed: {type(exc).__name__}: {exc}')
            finally:
                for p in procs:
                    p.stop()
                for probe in (pt_probe, tg_probe):
                    if probe is not None:
                        if probe.sub is not None:
                            node.destroy_subscription(probe.sub)
                        node.destroy_publisher(probe.pub)
    finally:
        spinner.stop(timeout_s=2.0)
        node.destroy_node()
        if not errors:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            errors.append(f'node logs kept in {log_dir}')
    return nodes_rows, overload_rows, errors
