"""Latest-frame processing: under overload a node works on the newest frame, never a backlog.

The subscription callback only stores the message (`LatestFrameWorker.submit`, O(1)); a worker
thread takes the newest stored message and processes it. A stored message that is replaced
before the worker took it is counted as dropped. Inference runs outside the executor, so
the executor keeps receiving (and the /diagnostics timer keeps running) while a frame is
processed; torch and OpenCV release the GIL while they compute.
"""
import threading
import time


class LatestFrameWorker:
    """One worker thread processing the newest submitted item.

    process(item): called in the worker thread; it must not raise (catch and count inside).
    on_drop(): called (in the submitting thread) for every item replaced before processing.
    """

    def __init__(self, process, on_drop, *, name: str = 'frame-worker'):
        self._process = process
        self._on_drop = on_drop
        self._cond = threading.Condition(threading.Lock())
        self._pending = None
        self._stopping = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item) -> None:
        """Store `item` as the newest; an unprocessed older one is dropped."""
        with self._cond:
            replaced = self._pending is not None
            self._pending = item
            self._cond.notify()
        if replaced:
            self._on_drop()

    def idle(self) -> bool:
        """True when nothing is pending or being processed (for tests and clean shutdown)."""
        with self._cond:
            return self._pending is None and not self._busy

    def _run(self) -> None:
        cond = self._cond
        process = self._process
        while True:
            with cond:
                while self._pending is None and not self._stopping:
                    cond.wait()
                if self._stopping:
                    return
                item, self._pending = self._pending, None
                self._busy = True
            try:
                process(item)
            finally:
                with cond:
                    self._busy = False

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the frame in progress (if any), discard a pending one, end the thread."""
        with self._cond:
            self._stopping = True
            self._pending = None
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)


def wait_idle(worker: LatestFrameWorker, timeout: float) -> bool:
    """Poll until `worker` is idle or `timeout` seconds pass (tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.idle():
            return True
        time.sleep(0.01)
    return worker.idle()
