"""Hazard segmentation: image array -> SegmentationResult at the input resolution. ROS-free.

logits_nchw (1, C, h, w) -> argmax at the model resolution (on the engine's device) -> class map
upsampled to the input resolution with cv2.INTER_NEAREST_EXACT (pixel-centre correct nearest;
an argmax of bilinearly upsampled logits would cost C float planes at full resolution for
slightly smoother edges) -> hazard = 255 where the class is in `hazard_classes` -> optional
largest safe disc (safe_site.largest_safe_disc) on the full-resolution class map.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .engine import InferenceEngine
from .preprocess import Preprocessor
from .safe_site import largest_safe_disc


@dataclass(frozen=True)
class SegmentationResult:
    classes: np.ndarray     # uint8 (H, W) class ids
    hazard: np.ndarray      # uint8 (H, W), 255 = hazard, 0 = not
    safe_site: tuple | None  # (x, y, r) in input pixels, or None


class SegmentationPredictor:
    def __init__(self, engine: InferenceEngine, hazard_classes=(1, 2), compute_safe_site=True,
                 ground_class: int = 0):
        manifest = engine.manifest
        if manifest.task != 'segmentation':
            raise ValueError(f'{engine.model_path} is a {manifest.task!r} model, not a '
                             'segmentation model')
        self.engine = engine
        self.hazard_classes = tuple(int(c) for c in hazard_classes)
        self.compute_safe_site = bool(compute_safe_site)
        self.ground_class = int(ground_class)
        self.preprocess = Preprocessor(manifest, engine.device)
        self._hazard_lut = np.zeros(256, np.uint8)
        for c in self.hazard_classes:
            if not 0 <= c < 256:
                raise ValueError(f'hazard class {c} is outside 0..255')
            self._hazard_lut[c] = 255

    def predict(self, image: np.ndarray, encoding: str = 'rgb8') -> SegmentationResult:
        height, width = image.shape[:2]
        logits = self.engine(self.preprocess(image, encoding))
        if logits.dim() != 4 or logits.shape[1] > 256:
            raise RuntimeError(f'{self.engine.model_path} returned shape {tuple(logits.shape)}; '
                               'logits_nchw needs (1, C <= 256, h, w)')
        small = logits[0].argmax(dim=0).to(dtype=torch.uint8).cpu().numpy()
        if small.shape != (height, width):
            classes = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
        else:
            classes = np.ascontiguousarray(small)
        hazard = cv2.LUT(classes, self._hazard_lut)
        site = (largest_safe_disc(classes, self.hazard_classes, self.ground_class)
                if self.compute_safe_site else None)
        return SegmentationResult(classes, hazard, site)
