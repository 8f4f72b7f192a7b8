"""Speck removal for hazard maps: hazard regions too small to be a labelled rock. ROS-free,
numpy + OpenCV (no torch, so the CLI can show the default cheaply).

A connected region (8-connected) of hazard pixels smaller than `min_area` pixels becomes the
ground class in the class map and not-hazard in the hazard map, in place. The training masks
call every rock under 30 px at 720x480 ground (`CLEAN_MIN_ROCK_PIXELS_720x480`), so a predicted
rock region far below that is noise; the default, 15 input pixels (about half of it), removed
60 % of the shipped model's false-alarm regions on the validation split and no found rock
(docs/RESULTS_MODELS.md, tenth session).
"""
from __future__ import annotations

import cv2
import numpy as np

DEFAULT_MIN_HAZARD_REGION_PX = 15


def remove_specks(classes: np.ndarray, hazard: np.ndarray, min_area: float,
                  ground_class: int, ground_is_hazard: bool = False) -> int:
    """`classes`: uint8 (h, w) class ids; `hazard`: uint8 (h, w), 255 = hazard, 0 = not (same
    shape). Regions of 255 in `hazard` with fewer than `min_area` pixels are set to
    `ground_class` in `classes` and to 0 in `hazard` (255 when `ground_is_hazard`). Returns the
    number of regions removed."""
    if classes.shape != hazard.shape:
        raise ValueError(f'class map {classes.shape} and hazard map {hazard.shape} differ')
    if min_area <= 0:
        return 0
    _, labels, stats, _ = cv2.connectedComponentsWithStats(hazard, connectivity=8)
    speck = stats[:, cv2.CC_STAT_AREA] < min_area
    speck[0] = False                            # label 0: every pixel that is not hazard
    removed = int(np.count_nonzero(speck))
    if removed:
        where = speck[labels]
        classes[where] = ground_class
        hazard[where] = 255 if ground_is_hazard else 0
    return removed
