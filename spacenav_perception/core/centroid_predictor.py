"""Centroid prediction: image array -> CentroidResult in full-resolution input pixels. ROS-free.

Output conventions (manifest `output`):
- 'xy_norm_logit': (u, v, logit) with u, v over the image extent: x = u * W - 0.5,
  y = v * H - 0.5; confidence = sigmoid(logit); in_view = confidence >= min_confidence.
- 'xy_input_px': (x_in, y_in) in model-input pixels, thesis scaling x = x_in * W / in_w,
  y = y_in * H / in_h; confidence 1.0, in_view True.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .engine import InferenceEngine
from .preprocess import Preprocessor


@dataclass(frozen=True)
class CentroidResult:
    x: float            # column, full-resolution input pixels (pixel-centre convention)
    y: float            # row
    confidence: float   # in [0, 1]
    in_view: bool


def sigmoid(logit: float) -> float:
    """Numerically stable logistic function."""
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    e = math.exp(logit)
    return e / (1.0 + e)


class CentroidPredictor:
    def __init__(self, engine: InferenceEngine, min_confidence: float = 0.5):
        manifest = engine.manifest
        if manifest.task != 'centroid':
            raise ValueError(f'{engine.model_path} is a {manifest.task!r} model, not a centroid '
                             'model')
        self.engine = engine
        self.min_confidence = float(min_confidence)
        self.output = manifest.output
        self.preprocess = Preprocessor(manifest, engine.device)
        self._needed = 3 if self.output == 'xy_norm_logit' else 2

    def predict(self, image: np.ndarray, encoding: str = 'mono8') -> CentroidResult:
        height, width = image.shape[:2]
        out = self.engine(self.preprocess(image, encoding))
        values = out.reshape(-1).cpu().numpy().astype(np.float64)
        if values.size < self._needed:
            raise RuntimeError(f'{self.engine.model_path} returned {values.size} value(s); '
                               f'output {self.output!r} needs {self._needed}')
        if self.output == 'xy_norm_logit':
            u, v, logit = values[:3]
            confidence = sigmoid(float(logit))
            return CentroidResult(float(u * width - 0.5), float(v * height - 0.5), confidence,
                                  confidence >= self.min_confidence)
        spec = self.engine.manifest.input
        x_in, y_in = values[:2]
        return CentroidResult(float(x_in * width / spec.width), float(y_in * height / spec.height),
                              1.0, True)
