"""Largest hazard-free landing disc in a class map (distance transform). ROS-free."""
from __future__ import annotations

import cv2
import numpy as np


def largest_safe_disc(classes: np.ndarray, hazard_classes=(1, 2), ground_class: int = 0):
    """(x, y, r) of the safe ground pixel farthest from anything unsafe, or None.

    Safe = class `ground_class` and not in `hazard_classes`. r is the Euclidean distance (px)
    from the site's pixel centre to the nearest unsafe pixel centre or to the first pixel
    centre outside the image (the border counts as unsafe), so a disc of radius r - 0.5
    around (x, y) covers only safe pixels. Ties go to the first pixel in row-major order.
    None when no pixel is safe.
    """
    classes = np.asarray(classes)
    if classes.ndim != 2:
        raise ValueError(f'class map must be 2-D, got shape {classes.shape}')
    safe = classes == ground_class
    for hazard in hazard_classes:
        if hazard == ground_class:
            safe[:] = False
    if not safe.any():
        return None
    padded = np.zeros((classes.shape[0] + 2, classes.shape[1] + 2), np.uint8)
    padded[1:-1, 1:-1] = safe
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    index = int(np.argmax(dist))
    y, x = divmod(index, classes.shape[1])
    return float(x), float(y), float(dist[y, x])
