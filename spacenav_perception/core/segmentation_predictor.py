"""Hazard segmentation: image array -> SegmentationResult at the input resolution. ROS-free.

logits_nchw (1, C, h, w) -> argmax at the model resolution -> class map upsampled to the input
resolution with cv2.INTER_NEAREST_EXACT on uint8 (pixel-centre correct nearest; an argmax of
bilinearly upsampled logits would cost C float planes at full resolution for slightly smoother
edges) -> hazard = 255 where the class is in `hazard_classes` -> optional largest safe disc.

Specks (hazard_specks.py): connected regions of the hazard classes (together, 8-connected)
smaller than `min_hazard_region_px` input pixels (scaled to the model resolution) are set to the
ground class at the model resolution, before anything else is derived, so /hazard_mask, the
class map and the safe site agree; 0 keeps every pixel.

Per-frame cost (bench/RESULTS.md, "Hazard post-processing"):
- argmax on the CPU: a running compare over the C channel planes into buffers allocated once
  (numpy, ~1 ms at 4 x 256 x 384) instead of torch's argmax over the channel dimension of a
  channels-first tensor (tens of ms when the cores are shared). Same result: the first maximum
  wins. On CUDA the argmax runs on the GPU and only the uint8 map is copied back.
- hazard: the class -> 0/255 table is applied at the model resolution, then upsampled (the
  same pixels as upsampling first: nearest only copies values).
- full-resolution classes only when asked (predict(classes=False) skips that resize).
- safe site on the MODEL-resolution class map, scaled to input pixels with
  safe_site.scale_site ((x + 0.5) s - 0.5, r s); the disc is hazard-free at the input resolution
  up to r - s/sqrt(2) and within about sqrt(2) s of the full-resolution optimum.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .engine import InferenceEngine
from .hazard_specks import DEFAULT_MIN_HAZARD_REGION_PX, remove_specks
from .preprocess import Preprocessor
from .safe_site import SafeSiteFinder, scale_site


@dataclass(frozen=True)
class SegmentationResult:
    classes: np.ndarray | None  # uint8 (H, W) class ids (None when not requested)
    hazard: np.ndarray      # uint8 (H, W), 255 = hazard, 0 = not
    safe_site: tuple | None  # (x, y, r) in input pixels, or None


class SegmentationPredictor:
    def __init__(self, engine: InferenceEngine, hazard_classes=(1, 2), compute_safe_site=True,
                 ground_class: int = 0,
                 min_hazard_region_px: float = DEFAULT_MIN_HAZARD_REGION_PX):
        manifest = engine.manifest
        if manifest.task != 'segmentation':
            raise ValueError(f'{engine.model_path} is a {manifest.task!r} model, not a '
                             'segmentation model')
        self.engine = engine
        self.hazard_classes = tuple(int(c) for c in hazard_classes)
        self.compute_safe_site = bool(compute_safe_site)
        self.ground_class = int(ground_class)
        self.min_hazard_region_px = float(min_hazard_region_px)
        if not self.min_hazard_region_px >= 0:     # also refuses NaN
            raise ValueError(f'min_hazard_region_px must be >= 0, not {min_hazard_region_px}')
        self.preprocess = Preprocessor(manifest, engine.device)
        self._hazard_lut = np.zeros(256, np.uint8)
        for c in self.hazard_classes:
            if not 0 <= c < 256:
                raise ValueError(f'hazard class {c} is outside 0..255')
            self._hazard_lut[c] = 255
        self._safe_site = SafeSiteFinder(self.hazard_classes, self.ground_class)
        self._ground_is_hazard = self.ground_class in self.hazard_classes
        self._argmax_shape = None

    def warmup(self, runs: int = 3) -> None:
        """Run the whole predictor (pre-processing, model, post-processing) on blank frames of
        the model's input size, so that the first real frame does not pay for lazy
        initialisation (allocator growth, first-call code paths). Call once at start-up."""
        spec = self.engine.manifest.input
        blank = np.zeros((spec.height, spec.width, 3), np.uint8)
        for _ in range(runs):
            self.predict(blank, 'rgb8')

    def predict(self, image: np.ndarray, encoding: str = 'rgb8', *, classes: bool = True,
                safe_site: bool | None = None) -> SegmentationResult:
        """classes=False: result.classes is None (saves one full-resolution resize);
        safe_site: None = the constructor's compute_safe_site, False skips it."""
        height, width = image.shape[:2]
        logits = self.engine(self.preprocess(image, encoding))
        if logits.dim() != 4 or logits.shape[1] > 256:
            raise RuntimeError(f'{self.engine.model_path} returned shape {tuple(logits.shape)}; '
                               'logits_nchw needs (1, C <= 256, h, w)')
        small = self._argmax(logits[0])        # uint8 (h, w), reused by the next call
        h, w = small.shape
        same_size = (h, w) == (height, width)
        hazard = cv2.LUT(small, self._hazard_lut)
        if self.min_hazard_region_px > 0:
            remove_specks(small, hazard, self.min_hazard_region_px * (h * w) / (height * width),
                          self.ground_class, self._ground_is_hazard)
        if not same_size:
            hazard = self._upsample(hazard, width, height)
        full = None
        if classes:
            full = small.copy() if same_size else self._upsample(small, width, height)
        want_site = self.compute_safe_site if safe_site is None else bool(safe_site)
        site = (scale_site(self._safe_site(small), width / w, height / h)
                if want_site else None)
        return SegmentationResult(full, hazard, site)

    @staticmethod
    def _upsample(small: np.ndarray, width: int, height: int) -> np.ndarray:
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)

    def _argmax(self, logits: torch.Tensor) -> np.ndarray:
        """(C, h, w) logits -> uint8 (h, w) index of the first maximum over C."""
        if logits.device.type != 'cpu':
            return logits.argmax(dim=0).to(dtype=torch.uint8).cpu().numpy()
        planes = logits.detach().numpy()       # any memory layout; planes may be strided
        count = planes.shape[0]
        if self._argmax_shape != planes.shape[1:]:
            shape = planes.shape[1:]
            self._best = np.empty(shape, np.float32)
            self._index = np.empty(shape, np.uint8)
            self._greater = np.empty(shape, np.bool_)
            self._argmax_shape = shape
        best, index, greater = self._best, self._index, self._greater
        np.copyto(best, planes[0])
        index.fill(0)
        for c in range(1, count):
            np.greater(planes[c], best, out=greater)
            np.putmask(index, greater, c)
            np.maximum(best, planes[c], out=best)
        return index
