"""Centroid prediction: image array -> CentroidResult in full-resolution input pixels. ROS-free.

Output conventions (manifest `output`):
- 'xy_norm_logit': (u, v, logit) with u, v over the image extent: x = u * W - 0.5,
  y = v * H - 0.5; confidence = sigmoid(logit); in_view = confidence >= min_confidence.
- 'xy_input_px': (x_in, y_in) in model-input pixels, thesis scaling x = x_in * W / in_w,
  y = y_in * H / in_h; confidence 1.0, in_view True.

`zoom_refine` (manifest field of that name unless given; 0 = off): when the first pass finds the
body in view and whole in the frame, the same model runs again on a crop of the frame around
its answer (core/zoom_refine.py) and the position comes from that second pass; the confidence
and the in-view decision stay the first pass's (made on the whole frame).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import zoom_refine as zoom
from .engine import InferenceEngine
from .manifest import zoom_refine_problem
from .preprocess import Preprocessor


@dataclass(frozen=True)
class CentroidResult:
    x: float            # column, full-resolution input pixels (pixel-centre convention)
    y: float            # row
    confidence: float   # in [0, 1]
    in_view: bool
    refined: bool = False   # the position comes from the zoom-refine pass


def sigmoid(logit: float) -> float:
    """Numerically stable logistic function."""
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    e = math.exp(logit)
    return e / (1.0 + e)


class CentroidPredictor:
    def __init__(self, engine: InferenceEngine, min_confidence: float = 0.5,
                 mono16_bits: int = 16, zoom_refine: float | None = None):
        """`mono16_bits`: significant bits of mono16 frames (core/image_codec.full_scale).
        `zoom_refine`: crop side / lit extent of the second pass, 0 = one pass, None = the
        manifest's (ValueError when out of range)."""
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
        factor = manifest.zoom_refine if zoom_refine is None else zoom_refine
        problem = zoom_refine_problem(factor, manifest.task)
        if problem:
            raise ValueError(problem)
        self.zoom_refine = float(factor)
        spec = manifest.input
        self._mean0, self._std0 = spec.per_channel(spec.mean)[0], spec.per_channel(spec.std)[0]

    def warmup(self, runs: int = 3) -> None:
        """Run the whole predictor (pre-processing, model, post-processing) on blank frames of
        the model's input size, so that the first real frame does not pay for lazy
        initialisation (allocator growth, first-call code paths). Call once at start-up."""
        spec = self.engine.manifest.input
        blank = np.zeros((spec.height, spec.width), np.uint8)
        for _ in range(runs):
            self.predict(blank, 'mono8')

    def _run(self, image: np.ndarray, encoding: str):
        """Model input tensor and the output values for one frame (or crop)."""
        x = self.preprocess(image, encoding)
        flat = self.engine(x).reshape(-1)
        if flat.numel() < self._needed:
            raise RuntimeError(f'{self.engine.model_path} returned {flat.numel()} value(s); '
                               f'output {self.output!r} needs {self._needed}')
        return x, flat[:self._needed].tolist()   # Python floats (exact), one device sync

    def _position(self, values, width: int, height: int):
        if self.output == 'xy_norm_logit':
            u, v, _ = values
            return u * width - 0.5, v * height - 0.5
        x_in, y_in = values
        return x_in * width / self._in_width, y_in * height / self._in_height

    def _crop(self, x_input, x: float, y: float, width: int, height: int):
        """The zoom-refine crop window for a first answer at (x, y), or None."""
        first = x_input[0, 0].float().cpu().numpy() * self._std0 + self._mean0
        extent = zoom.frame_extent(first, width, height)
        if extent is None:
            return None
        return zoom.crop_window(x, y, extent, self.zoom_refine, width, height)

    def predict(self, image: np.ndarray, encoding: str = 'mono8') -> CentroidResult:
        height, width = image.shape[:2]
        x_input, values = self._run(image, encoding)
        x, y = self._position(values, width, height)
        if self.output == 'xy_norm_logit':
            confidence = sigmoid(values[2])
            in_view = confidence >= self.min_confidence
        else:
            confidence, in_view = 1.0, True
        if not (self.zoom_refine and in_view):
            return CentroidResult(x, y, confidence, in_view)
        window = self._crop(x_input, x, y, width, height)
        if window is None:
            return CentroidResult(x, y, confidence, in_view)
        x0, y0, side = window
        crop = np.ascontiguousarray(image[y0:y0 + side, x0:x0 + side])
        _, values = self._run(crop, encoding)
        cx, cy = self._position(values, side, side)
        return CentroidResult(x0 + cx, y0 + cy, confidence, in_view, refined=True)
