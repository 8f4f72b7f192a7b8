"""Rock-level scores of a segmentation: which rocks were found, by size.

Pixel IoU says how much of the rock area was labelled right; a lander also asks whether a given
rock was seen at all.  Each connected region of one rock class in the truth mask (8-connected) is
one rock; it counts as *found* when at least ``found_fraction`` of its pixels are predicted as a
rock of either class (a hazard), and as *right class* when that majority is of its own class.
A *false alarm* is a connected region of predicted rock (either class) with no truth-rock pixel.

Sizes are areas in pixels expressed at 720 x 480 (the Kaggle frame size): an area measured in a
frame of another size is scaled by 720*480 / (H*W), so splits rendered at other resolutions
report on the same bins as the full-size test split.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..core.lunar_classes import LARGE_ROCK, SMALL_ROCK
from ..synth.lunar import CLEAN_MIN_ROCK_PIXELS_720x480

REFERENCE_AREA = 720 * 480
# bin edges in px at 720 x 480, the first one the clean masks' minimum rock area
AREA_EDGES = (0, CLEAN_MIN_ROCK_PIXELS_720x480, 100, 300, 1000, float('inf'))
ROCK_CLASSES = {'small_rock': SMALL_ROCK, 'large_rock': LARGE_ROCK}
_EIGHT = np.ones((3, 3), bool)


def _edges(i: int) -> list:
    """[low, high) of bin i in JSON-safe form (the open top bin's high is None)."""
    hi = AREA_EDGES[i + 1]
    return [AREA_EDGES[i], None if hi == float('inf') else hi]


def _bin(area_ref: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(AREA_EDGES[1:-1]), area_ref, side='right')


class RockDetectionCounter:
    """Accumulates rock-level counts over frames: ``add(truth, pred)`` per frame (class-id maps of
    the same shape), ``result()`` for the JSON."""

    def __init__(self, found_fraction: float = 0.5):
        self.found_fraction = float(found_fraction)
        nb = len(AREA_EDGES) - 1
        self.n = {k: np.zeros(nb, np.int64) for k in ROCK_CLASSES}
        self.found = {k: np.zeros(nb, np.int64) for k in ROCK_CLASSES}
        self.same = {k: np.zeros(nb, np.int64) for k in ROCK_CLASSES}
        self.false_alarms = np.zeros(nb, np.int64)
        self.frames = 0

    def add(self, truth: np.ndarray, pred: np.ndarray) -> None:
        truth = np.asarray(truth)
        pred = np.asarray(pred)
        if truth.shape != pred.shape:
            raise ValueError(f'truth {truth.shape} and prediction {pred.shape} differ in shape')
        scale = REFERENCE_AREA / float(truth.size)
        pred_rock = np.isin(pred, tuple(ROCK_CLASSES.values()))
        for name, cid in ROCK_CLASSES.items():
            labels, count = ndimage.label(truth == cid, structure=_EIGHT)
            if not count:
                continue
            index = np.arange(1, count + 1)
            area = np.bincount(labels.ravel(), minlength=count + 1)[1:]
            hit = ndimage.sum_labels(pred_rock, labels, index)
            same = ndimage.sum_labels(pred == cid, labels, index)
            bins = _bin(area * scale)
            found = hit >= self.found_fraction * area
            right = same >= self.found_fraction * area
            np.add.at(self.n[name], bins, 1)
            np.add.at(self.found[name], bins, found.astype(np.int64))
            np.add.at(self.same[name], bins, right.astype(np.int64))
        labels, count = ndimage.label(pred_rock, structure=_EIGHT)
        if count:
            index = np.arange(1, count + 1)
            area = np.bincount(labels.ravel(), minlength=count + 1)[1:]
            overlap = ndimage.sum_labels(np.isin(truth, tuple(ROCK_CLASSES.values())), labels, index)
            np.add.at(self.false_alarms, _bin(area[overlap == 0] * scale), 1)
        self.frames += 1

    def result(self) -> dict:
        def rate(a, b):
            return float(a) / float(b) if b else None
        bins = []
        for name in ROCK_CLASSES:
            for i in range(len(AREA_EDGES) - 1):
                n = int(self.n[name][i])
                bins.append({'class': name, 'area_px': _edges(i),
                             'n': n, 'found': int(self.found[name][i]),
                             'recall': rate(self.found[name][i], n),
                             'right_class': rate(self.same[name][i], n)})
        totals = {name: {'n': int(self.n[name].sum()), 'found': int(self.found[name].sum()),
                         'recall': rate(self.found[name].sum(), self.n[name].sum()),
                         'right_class': rate(self.same[name].sum(), self.n[name].sum())}
                  for name in ROCK_CLASSES}
        return {'frames': self.frames, 'found_fraction': self.found_fraction,
                'area_unit': 'px at 720x480', 'totals': totals, 'bins': bins,
                'false_alarms': {'n': int(self.false_alarms.sum()),
                                 'per_frame': rate(self.false_alarms.sum(), self.frames),
                                 'by_area': [{'area_px': _edges(i),
                                              'n': int(self.false_alarms[i])}
                                             for i in range(len(AREA_EDGES) - 1)]}}


def format_rocks(rocks: dict) -> list:
    """Table lines: recall and right-class rate per rock class and size bin (bins with rocks)."""
    def edge(v):
        return 'inf' if v is None else f'{v:g}'
    lines = [f'rocks found (>= {rocks["found_fraction"]:.0%} of a rock\'s pixels predicted rock; '
             f'area in {rocks["area_unit"]}):']
    for row in rocks['bins']:
        if row['n']:
            lo, hi = row['area_px']
            lines.append(f'  {row["class"]:<10} {edge(lo):>5}-{edge(hi):<5} n {row["n"]:>6}  '
                         f'found {row["recall"]:.3f}  right class {row["right_class"]:.3f}')
    fa = rocks['false_alarms']
    if fa['per_frame'] is not None:
        lines.append(f'  false alarms (predicted rock regions touching no rock): {fa["n"]} '
                     f'({fa["per_frame"]:.2f} per frame)')
    return lines
