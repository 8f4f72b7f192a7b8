"""Classical centroid baselines on full-resolution mono images.

``centre_of_brightness``: Otsu threshold on the frame, then the intensity-weighted mean
position of the pixels above it (the classical centre of brightness / centre of light).
It estimates where the light is, so for a partly lit body it is biased toward the sun side
relative to the centre of mass; stars and hot pixels above the threshold also pull it.
"""
from __future__ import annotations

import math

import cv2
import numpy as np


def otsu_threshold(img: np.ndarray) -> float:
    """Otsu threshold of a mono image, in the image's own units."""
    if img.dtype == np.uint8:
        t, _ = cv2.threshold(img, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        return float(t)
    f = img.astype(np.float64)
    lo, hi = float(f.min()), float(f.max())
    if hi <= lo:
        return hi
    u8 = np.clip(np.rint((f - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)
    t, _ = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return lo + t / 255.0 * (hi - lo)


def centre_of_brightness(img: np.ndarray) -> tuple[float, float]:
    """(x, y) in the project's pixel convention; (nan, nan) when nothing is above Otsu."""
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    t = otsu_threshold(img)
    f = img.astype(np.float64)
    w = np.where(f > t, f, 0.0)
    total = w.sum()
    if total <= 0:
        return math.nan, math.nan
    ys = np.arange(f.shape[0], dtype=np.float64)
    xs = np.arange(f.shape[1], dtype=np.float64)
    x = float((w.sum(axis=0) * xs).sum() / total)
    y = float((w.sum(axis=1) * ys).sum() / total)
    return x, y


BASELINES = {'cob': centre_of_brightness}
