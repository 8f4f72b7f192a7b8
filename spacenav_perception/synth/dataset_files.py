"""Files the renderers share: an exclusive directory lock and atomic CSV writes.

Several processes may render chunks (``--start-index``) of one data set into the same directory;
each merges its rows into the CSV files under `DirLock`, reading what is on disk at that moment,
so no process overwrites another's rows. CSVs are written to a per-process temporary file and
renamed into place, so a reader never sees a half-written file.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np


class DirLock:
    """Exclusive advisory lock on DIR/.render.lock (POSIX flock; a no-op where unsupported)."""

    def __init__(self, directory):
        self.path = Path(directory) / '.render.lock'

    def __enter__(self):
        self.fh = open(self.path, 'a')
        try:
            import fcntl
            fcntl.flock(self.fh, fcntl.LOCK_EX)
        except (ImportError, OSError):
            pass
        return self

    def __exit__(self, *exc):
        self.fh.close()         # closing releases the lock


def read_rows(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    with open(path, newline='') as fh:
        return list(csv.DictReader(fh))


def format_value(v):
    """CSV text of a value: floats by repr (exact round trip), bools and numpy scalars as ints."""
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return repr(v) if math.isfinite(v) else 'nan'
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def write_csv_atomic(path: Path, fields, rows) -> None:
    path = Path(path)
    tmp = path.with_name(f'{path.name}.{os.getpid()}.tmp')
    with open(tmp, 'w', newline='') as fh:
        w = csv.DictWriter(fh, fieldnames=list(fields), extrasaction='ignore')
        w.writeheader()
        for row in rows:
            w.writerow({k: format_value(row.get(k, '')) for k in fields})
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
