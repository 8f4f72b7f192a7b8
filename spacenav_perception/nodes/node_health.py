"""Per-node health: frame counters, latency percentiles, /diagnostics at 1 Hz, throttled warnings.

Counters (cumulative since start-up, all published on /diagnostics):
    received    frames that reached the subscription callback
    answered    frames processed and published
    no_target   frames processed with nothing to publish (e.g. target not in view)
    dropped     frames replaced by a newer one before processing (overload, see frame_worker)
    rejected    frames that cannot be decoded, per ImageRejected.reason
    errors      frames whose processing raised (e.g. CUDA out of memory); the node carries on
Every received frame ends in exactly one of answered / no_target / dropped / rejected / errors
(or is still being processed).
    input_warnings  frames processed in spite of a problem with the input, per kind (e.g.
                'mono16_over_range': samples above the declared mono16_bits, clipped); such a
                frame is also answered or no_target

Diagnostic level of a period (the time since the previous /diagnostics message):
    ERROR  a frame failed with an error and no frame has been processed successfully since
    WARN   frames were rejected, dropped, failed or had input warnings in the period
    OK     otherwise (message 'waiting for images on TOPIC' until the first frame)

Warnings in the log are throttled: one per problem (rejection reason, input warning kind,
'dropped', 'error') per
`warn_period` seconds, naming the problem and the topic, with the running count.
"""
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from spacenav_perception.core.latency import LatencyWindow

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


class NodeHealth:
    """Counters + /diagnostics publisher for one node (thread-safe counting)."""

    def __init__(self, node, *, topic: str, task: str, period: float = 1.0,
                 warn_period: float = 10.0, latency_window: int = 1000):
        self._node = node
        self._log = node.get_logger()
        self.topic = topic
        self.task = task
        self.info = {}                 # device, engine, model, sha256, ... (set by the node)
        self._lock = threading.Lock()
        self.received = 0
        self.answered = 0
        self.no_target = 0
        self.dropped = 0
        self.errors = 0
        self.rejected = {}             # reason -> count
        self.input_warnings = {}       # kind -> count
        self.last_error = ''
        self._failing = False          # an error and no success since
        self._latency = LatencyWindow(latency_window)
        self._warn_period = warn_period
        self._last_warning = {}        # problem -> monotonic time of the last warning
        self._previous = self._problem_counts()
        self._status_name = f'{node.get_name()}: {task}'
        self._publisher = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._timer = node.create_timer(period, self.publish)

    # ------------------------------------------------------------------ counting (per frame)
    def count_received(self) -> None:
        with self._lock:
            self.received += 1

    def count_dropped(self, n: int = 1) -> None:
        with self._lock:
            self.dropped += n
            count = self.dropped
        self._warn('dropped', f'{count} frame(s) on {self.topic} dropped so far: frames arrive '
                   'faster than they are processed (only the newest is kept)')

    def count_answered(self, latency_s: float) -> None:
        with self._lock:
            self.answered += 1
            self._failing = False
            self._latency.add(latency_s * 1e3)

    def count_no_target(self, latency_s: float) -> None:
        with self._lock:
            self.no_target += 1
            self._failing = False
            self._latency.add(latency_s * 1e3)

    def count_rejected(self, reason: str, message: str) -> None:
        with self._lock:
            count = self.rejected.get(reason, 0) + 1
            self.rejected[reason] = count
        self._warn(reason, f'frame on {self.topic} rejected ({reason}): {message} '
                   f'[{count} rejected for this reason so far]')

    def count_input_warning(self, kind: str, message: str) -> None:
        """A frame that is processed in spite of a problem with it (`kind`: a diagnostics key)."""
        with self._lock:
            count = self.input_warnings.get(kind, 0) + 1
            self.input_warnings[kind] = count
        self._warn(kind, f'frame on {self.topic}: {message} [{count} such frame(s) so far]')

    def count_error(self, exc: BaseException) -> None:
        text = f'{type(exc).__name__}: {exc}'.splitlines()[0]
        with self._lock:
            self.errors += 1
            self._failing = True
            self.last_error = text
            count = self.errors
        self._warn('error', f'processing a frame from {self.topic} failed: {text} '
                   f'[{count} error(s) so far; the node carries on]')

    # ------------------------------------------------------------------ reading
    def counters(self) -> dict:
        """A consistent copy of the counters (tests, benchmarks)."""
        with self._lock:
            return self._counters()

    def latency_ms(self) -> tuple:
        """(p50, p95) processing latency in ms (callback -> published), NaN before any frame."""
        return self._latency.percentile(50), self._latency.percentile(95)

    def _problem_counts(self):
        return (self.errors, self.dropped, sum(self.rejected.values()),
                sum(self.input_warnings.values()))

    def status(self) -> DiagnosticStatus:
        """The DiagnosticStatus for the period since the previous call."""
        with self._lock:
            counts = self._problem_counts()
            failing, last_error = self._failing, self.last_error
            snapshot = self._counters()
        p50, p95 = self.latency_ms()
        new_errors, new_dropped, new_rejected, new_warned = (
            a - b for a, b in zip(counts, self._previous))
        self._previous = counts
        if failing:
            level = ERROR
            message = f'processing fails, nothing answered since: {last_error}'
        elif new_errors or new_dropped or new_rejected or new_warned:
            level = WARN
            parts = [f'{n} {what}' for n, what in ((new_rejected, 'rejected'),
                                                   (new_dropped, 'dropped'),
                                                   (new_errors, 'errors'),
                                                   (new_warned, 'with input warnings')) if n]
            message = ', '.join(parts) + ' in the last period'
        elif snapshot['received'] == 0:
            level, message = OK, f'waiting for images on {self.topic}'
        else:
            level, message = OK, 'ok'
        values = [('topic', self.topic), ('task', self.task)]
        values += [(k, v) for k, v in self.info.items()]
        values += [(k, snapshot[k]) for k in ('received', 'answered', 'no_target', 'dropped',
                                               'errors', 'rejected_total')]
        values += [(f'rejected.{reason}', n) for reason, n in sorted(snapshot['rejected'].items())]
        values += [(f'input_warning.{kind}', n)
                   for kind, n in sorted(snapshot['input_warnings'].items())]
        values += [('latency_p50_ms', f'{p50:.3f}'), ('latency_p95_ms', f'{p95:.3f}')]
        if last_error:
            values.append(('last_error', last_error))
        return DiagnosticStatus(level=level, name=self._status_name, message=message,
                                hardware_id=str(self.info.get('device', '')),
                                values=[KeyValue(key=str(k), value=str(v)) for k, v in values])

    def _counters(self) -> dict:
        return {'received': self.received, 'answered': self.answered,
                'no_target': self.no_target, 'dropped': self.dropped, 'errors': self.errors,
                'rejected': dict(self.rejected), 'rejected_total': sum(self.rejected.values()),
                'input_warnings': dict(self.input_warnings)}

    def publish(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = [self.status()]
        self._publisher.publish(msg)

    # ------------------------------------------------------------------ throttled log
    def _warn(self, problem: str, message: str) -> None:
        now = time.monotonic()
        last = self._last_warning.get(problem)
        if last is not None and now - last < self._warn_period:
            return
        self._last_warning[problem] = now
        self._log.warning(message)
