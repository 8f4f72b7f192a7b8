"""Shared helpers of the benchmarks: statistics, machine description, logging to stderr."""
from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    """Progress / human output goes to stderr so that stdout can carry the one JSON object."""
    print(message, file=sys.stderr, flush=True)


def percentile(values, q: float) -> float:
    """q-th percentile (linear interpolation) of a non-empty sequence; NaN when empty."""
    if len(values) == 0:
        return float('nan')
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summarize_ms(durations_s) -> dict:
    """p50 / p99 / mean (ms) and fps from per-call durations in seconds."""
    d = np.asarray(durations_s, dtype=np.float64) * 1e3
    p50 = percentile(d, 50)
    return {'p50_ms': round(p50, 3), 'p99_ms': round(percentile(d, 99), 3),
            'mean_ms': round(float(d.mean()), 3), 'fps': round(1e3 / float(d.mean()), 2),
            'runs': int(d.size)}


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def cpu_model() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    try:
        out = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict:
    info = {'date': _dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
            'commit': git_commit(), 'nproc': os.cpu_count(), 'cpu': cpu_model(),
            'python': platform.python_version()}
    try:
        import torch
        info['torch'] = torch.__version__
        info['torch_threads'] = torch.get_num_threads()
        if torch.cuda.is_available():
            info['gpu'] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        import onnxruntime
        info['onnxruntime'] = onnxruntime.__version__
    except ImportError:
        pass
    return info
