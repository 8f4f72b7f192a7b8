"""Second centroid pass on a crop around the first answer ("zoom refine"). ROS-free.

The centroid network sees the whole frame at its input size (256 px for a 1024-px camera), so a
far body is a small disc there. The second pass runs the same network on a square crop of the
original frame centred on the first answer, with a side of `factor` times the lit body's extent,
so the body fills more of the network's input and more of the camera's pixels reach it.

The lit extent is measured on the first pass's model input (no second conversion of the frame):
the largest connected group of pixels above 15 % of the frame's bright end (and above 3 DN of
8 bits), dilated by one pixel so a crescent broken by shadow stays one group; the longer side
of its bounding box, in frame pixels, is the extent (for a crescent, the side across the sun is
about the body's diameter). The crop is skipped (one pass) when that group touches the frame edge
(a body cut by the edge must stay cut where the frame cuts it, and its extent is not known), and
when the crop would not be smaller than the frame. A crop partly outside the frame is moved
inside it, never padded. Its corner and side are even, so Bayer mosaics and 4:2:2 YUV keep their
pixel pairs.
"""
from __future__ import annotations

import cv2
import numpy as np

THRESHOLD_FRACTION = 0.15     # of the 99.9th percentile of the model input
THRESHOLD_FLOOR = 3 / 255     # at least this (the input in [0, 1]): above dark noise
MIN_SIDE = 32                 # frame pixels


def lit_extent(image01: np.ndarray):
    """(width, height, touches_edge) in pixels of `image01` of the bounding box of the largest
    lit group of a 2-D image in [0, 1], or None when nothing is lit."""
    f = np.asarray(image01, np.float32)
    threshold = max(THRESHOLD_FLOOR, THRESHOLD_FRACTION * float(np.percentile(f, 99.9)))
    mask = cv2.dilate((f > threshold).astype(np.uint8), np.ones((3, 3), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return None
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[k, :4])
    height, width = f.shape
    touches = x <= 0 or y <= 0 or x + w >= width or y + h >= height
    return w, h, touches


def frame_extent(model_input01: np.ndarray, width: int, height: int):
    """The lit extent in pixels of a `width` x `height` frame, measured on its model input (a
    2-D image in [0, 1]); None when there is no second pass to make (nothing lit, or the lit
    group touches the edge)."""
    found = lit_extent(model_input01)
    if found is None or found[2]:
        return None
    in_height, in_width = np.shape(model_input01)
    return max(found[0] * width / in_width, found[1] * height / in_height)


def crop_window(x: float, y: float, extent: float, factor: float, width: int, height: int):
    """(x0, y0, side) of the square crop centred near (x, y) with side factor * extent (frame
    pixels), even corner and side, inside the frame; None when it would not be smaller than the
    frame (no zoom to gain)."""
    side = int(round(max(MIN_SIDE, factor * extent) / 2)) * 2
    if side >= min(width, height) - 1:
        return None
    x0 = int(round((x - side / 2) / 2)) * 2
    y0 = int(round((y - side / 2) / 2)) * 2
    x0 = min(max(x0, 0), (width - side) // 2 * 2)
    y0 = min(max(y0, 0), (height - side) // 2 * 2)
    return x0, y0, side
