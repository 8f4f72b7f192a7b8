"""Rolling latency window with percentiles; thread-safe and cheap to add to. ROS-free."""
from __future__ import annotations

import threading
from collections import deque

import numpy as np


class LatencyWindow:
    """The last `maxlen` latencies (ms). add() is O(1); percentile() sorts a snapshot."""

    def __init__(self, maxlen: int = 1000):
        if maxlen <= 0:
            raise ValueError(f'maxlen must be positive, got {maxlen}')
        self._values = deque(maxlen=int(maxlen))
        self._lock = threading.Lock()
        self._total = 0

    def add(self, ms: float) -> None:
        with self._lock:
            self._values.append(float(ms))
            self._total += 1

    def snapshot(self) -> np.ndarray:
        with self._lock:
            return np.fromiter(self._values, dtype=np.float64, count=len(self._values))

    def percentile(self, p: float) -> float:
        """p in [0, 100]; NaN when the window is empty."""
        values = self.snapshot()
        return float(np.percentile(values, p)) if values.size else float('nan')

    def mean(self) -> float:
        values = self.snapshot()
        return float(values.mean()) if values.size else float('nan')

    @property
    def count(self) -> int:
        """Samples in the window now (at most maxlen)."""
        with self._lock:
            return len(self._values)

    @property
    def total(self) -> int:
        """Samples ever added."""
        return self._total

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
