"""Largest hazard-free landing disc in a class map (distance transform). ROS-free.

    finder = SafeSiteFinder(hazard_classes=(1, 2))    # keeps its buffers between frames
    site = finder(classes)                             # (x, y, r) or None
    site = scale_site(site, sx, sy)                    # class-map pixels -> input pixels

`largest_safe_disc(classes)` is the one-shot form. Per frame the finder writes the safe mask
straight into the inside of a zero-bordered buffer and the distance transform into a second
buffer, both allocated once per class-map shape (no per-frame allocation besides OpenCV's
internals).

The segmentation predictor runs this on the MODEL-resolution class map (a few times fewer
pixels than the input) and scales the result with `scale_site`; see its docstring for what the
scaled disc guarantees at the input resolution.
"""
from __future__ import annotations

import cv2
import numpy as np


class SafeSiteFinder:
    """Callable: class map (H, W) -> (x, y, r) of the largest safe disc, or None.

    Safe = class `ground_class` and not in `hazard_classes`. r is the Euclidean distance (px)
    from the site's pixel centre to the nearest unsafe pixel centre or to the first pixel
    centre outside the image (the border counts as unsafe), so a disc of radius r - 0.5
    around (x, y) covers only safe pixels. Ties go to the first pixel in row-major order.
    None when no pixel is safe.
    """

    def __init__(self, hazard_classes=(1, 2), ground_class: int = 0):
        self.ground_class = int(ground_class)
        self.hazard_classes = tuple(int(c) for c in hazard_classes)
        self._never_safe = self.ground_class in self.hazard_classes
        self._shape = None

    def _buffers(self, shape):
        if shape != self._shape:
            height, width = shape
            self._padded = np.zeros((height + 2, width + 2), np.uint8)   # border stays 0
            self._inside = self._padded.view(np.bool_)[1:-1, 1:-1]
            self._dist = np.empty((height + 2, width + 2), np.float32)
            self._shape = shape
        return self._padded, self._inside, self._dist

    def __call__(self, classes: np.ndarray):
        classes = np.asarray(classes)
        if classes.ndim != 2:
            raise ValueError(f'class map must be 2-D, got shape {classes.shape}')
        if self._never_safe or classes.size == 0:
            return None
        padded, inside, dist = self._buffers(classes.shape)
        np.equal(classes, self.ground_class, out=inside)
        if not inside.any():
            return None
        dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE, dst=dist)
        # The zero border has distance 0 and some inside pixel has >= 1, so the first maximum
        # of the padded map is the first maximum of the inside in row-major order.
        index = int(np.argmax(dist))
        y, x = divmod(index, padded.shape[1])
        return float(x - 1), float(y - 1), float(dist[y, x])


def largest_safe_disc(classes: np.ndarray, hazard_classes=(1, 2), ground_class: int = 0):
    """(x, y, r) of the safe ground pixel farthest from anything unsafe, or None.

    One-shot SafeSiteFinder (see there for the exact definition)."""
    return SafeSiteFinder(hazard_classes, ground_class)(classes)


def scale_site(site, sx: float, sy: float):
    """A site found on a class map resized by (sx, sy) -> input pixels, or None.

    x -> (x + 0.5) sx - 0.5, y -> (y + 0.5) sy - 0.5 (the project's pixel convention) and
    r -> r * min(sx, sy). When the class map was nearest-upsampled by these factors, every
    unsafe input pixel centre is at least r - min(sx, sy) / sqrt(2) from (x, y) (a pixel centre
    of the input lies inside the extent of the class-map pixel it was sampled from), and r is
    at most about sqrt(2) * s short of the input-resolution optimum.
    """
    if site is None:
        return None
    x, y, r = site
    return (x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5, r * min(sx, sy)
