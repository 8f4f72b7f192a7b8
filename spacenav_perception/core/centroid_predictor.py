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
    def __init__(self, engine: InferenceEngine, min_confidence: float = 0.5,
                 mono16_bits: int = 16):
        """`mono16_bits`: significant bits of mono16 frames (core/image_codec.full_scale)."""
        manifest = engine.manifest
        if manifest.task != 'centroid':
            raise ValueError(f'{engine.model_path} is a {manifest.task!r} model, not a centroid '
                             'model')
        self.engine = engine
        self.min_confidence = float(min_confidence)
        self.output = manifest.output
        self.preprocess = Preprocessor(manifest, engine.device, mono16_bits)
        self._needed = 3 if self.output == 'xy_norm_logit' else 2
        self._in_width, self._in_height = manifest.input.width, manifest.input.height

    def warmup(self, runs: int = 3) -> None:
        """Run the whole predictor (pre-processing, model, post-processing) on blank frames of
        the model's input size, so that the first real frame does not pay for lazy
        initialisation (allocator growth, first-call code paths). Call once at start-up."""
        spec = self.engine.manifest.input
        blank = np.zeros((spec.height, spec.width), np.uint8)
        for _ in range(runs):
            self.predict(blank, 'mono8')

    def predict(self, image: np.ndarray, encoding: str = 'mono8') -> CentroidResult:
        height, width = image.shape[:2]
        out = self.engine(self.preprocess(image, encoding))
        flat = out.reshape(-1)
        if flat.numel() < self._needed:
            raise RuntimeError(f'{self.engine.model_path} returned {flat.numel()} value(s); '
                               f'output {self.output!r} needs {self._needed}')
        values = flat[:self._needed].tolist()   # Python floats (exact), one device sync
        if self.output == 'xy_norm_logit':
            u, v, logit = values
            confidence = sigmoid(logit)
            return CentroidResult(u * width - 0.5, v * height - 0.5, confidence,
                                  confidence >= self.min_confidence)
        x_in, y_in = values
        return CentroidResult(x_in * width / self._in_width, y_in * height / self._in_height,
                              1.0, True)
