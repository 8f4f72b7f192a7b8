"""Training on several data set folders at once: `--data DIR [DIR ...]`.

A task's loader reads one folder and returns a tuple of per-frame collections (numpy arrays
stacked on the first axis, or lists); `load_roots` calls it once per folder and joins the
results item by item, in the order the folders were given. `--limit N` applies per folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np

Roots = Union[str, Path, Sequence[Union[str, Path]]]


def as_roots(data: Roots) -> list:
    """The folder(s) as a list of Paths (one str or Path is one folder)."""
    if isinstance(data, (str, Path)):
        return [Path(data)]
    roots = [Path(d) for d in data]
    if not roots:
        raise ValueError('no data folder given')
    return roots


def describe(data: Roots) -> str:
    """The folder(s) as one string for configs and manifests (space-separated)."""
    return ' '.join(str(r) for r in as_roots(data))


def load_roots(load: Callable, data: Roots, *args, **kwargs) -> tuple:
    """`load(root, *args, **kwargs)` for every folder, joined item by item."""
    parts = [load(root, *args, **kwargs) for root in as_roots(data)]
    if len(parts) == 1:
        return parts[0]
    joined = []
    for items in zip(*parts):
        if isinstance(items[0], np.ndarray):
            joined.append(np.concatenate(items, axis=0))
        else:
            joined.append([x for item in items for x in item])
    return tuple(joined)
