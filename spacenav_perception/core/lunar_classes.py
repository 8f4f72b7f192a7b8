"""The four lunar terrain classes, defined once: ids, names and the Kaggle mask palette.

Every module that names or draws a class (renderer, dataset loader, trainer, evaluation,
reference models, hazard_node) imports them from here. ROS-free and numpy-only.
"""
import numpy as np

GROUND, SMALL_ROCK, LARGE_ROCK, SKY = 0, 1, 2, 3
CLASS_NAMES = ('ground', 'small_rock', 'large_rock', 'sky')     # index = class id
NUM_CLASSES = len(CLASS_NAMES)
HAZARD_CLASSES = (SMALL_ROCK, LARGE_ROCK)   # what /hazard_mask marks by default
# class id -> RGB mask colour of the Kaggle "Artificial Lunar Rocky Landscape" layout
PALETTE = np.array([(0, 0, 0), (0, 255, 0), (0, 0, 255), (255, 0, 0)], dtype=np.uint8)
