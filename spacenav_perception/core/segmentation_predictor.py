"""Hazard segmentation: image array -> SegmentationResult at the input resolution. ROS-free.

logits_nchw (1, C, h, w) [+ the logits of the mirrored frame, mirrored back, when
`flip_average`] -> class map at the input resolution (class_map.py: 'bilinear' = argmax of
the bilinearly upsampled logits, the default; 'nearest' = argmax at the model resolution,
nearest-upsampled) -> hazard = 255 where the class is in `hazard_classes` -> optional largest
safe disc.

Flip averaging (`flip_average`, default on; see class_map.py): the logits of the frame mirrored
left-right, mirrored back, are averaged with the frame's. Off halves the model's time.

Logit offset (`logit_offset`; default: the manifest's `logit_offset`, none when it has none): one
number per class added to the (averaged) logits before anything else, a decision rule chosen on
validation data by `spacenav calibrate segmentation` (evaluation/logit_calibration.py). Negative
rock offsets trade hazard recall for precision and IoU; zeros give the network's own argmax.

Specks (hazard_specks.py): connected regions of the hazard classes (together, 8-connected)
smaller than `min_hazard_region_px` input pixels are set to the ground class before anything
else is derived, so /hazard_mask, the class map and the safe site agree; 0 keeps every pixel.
In 'nearest' mode this runs at the model resolution with the threshold scaled by the pixel
ratio.

Per-frame cost (bench/RESULTS.md, "Hazard post-processing"):
- argmax on the CPU: class_map.PlaneArgmax (a running compare over the C planes into
  buffers allocated once). On CUDA the upsampling and the argmax run on the GPU and only the
  uint8 map is copied back.
- 'nearest': the hazard LUT is applied at the model resolution, then upsampled (the same pixels
  as upsampling first: nearest only copies values); the safe site is found on the
  MODEL-resolution class map and scaled to input pixels with safe_site.scale_site
  ((x + 0.5) s - 0.5, r s); the disc is hazard-free at the input resolution up to r - s/sqrt(2)
  and within about sqrt(2) s of the full-resolution optimum.
- 'bilinear': everything after the argmax is at the input resolution (the safe site exactly).
- full-resolution classes only when asked (predict(classes=False) skips that copy / resize).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .class_map import (DEFAULT_FLIP_AVERAGE, DEFAULT_UPSAMPLING, BilinearArgmax, PlaneArgmax,
                        check_upsampling)
from .engine import InferenceEngine
from .hazard_specks import DEFAULT_MIN_HAZARD_REGION_PX, remove_specks
from .manifest import logit_offset_problem
from .preprocess import Preprocessor
from .safe_site import SafeSiteFinder, scale_site


def torch_class_map(logits: torch.Tensor, width: int, height: int) -> np.ndarray:
    """The CUDA path of SegmentationPredictor's class map (any torch device): (C, h, w) logits
    -> uint8 (height, width) numpy argmax of the logits bilinearly upsampled there (half-pixel
    centres, as cv2.INTER_LINEAR), computed on the logits' device; only the uint8 map is
    copied back."""
    if tuple(logits.shape[1:]) != (height, width):
        logits = F.interpolate(logits[None], size=(height, width), mode='bilinear',
                               align_corners=False)[0]
    return logits.argmax(dim=0).to(dtype=torch.uint8).cpu().numpy()


@dataclass(frozen=True)
class SegmentationResult:
    classes: np.ndarray | None  # uint8 (H, W) class ids (None when not requested)
    hazard: np.ndarray      # uint8 (H, W), 255 = hazard, 0 = not
    safe_site: tuple | None  # (x, y, r) in input pixels, or None


class SegmentationPredictor:
    def __init__(self, engine: InferenceEngine, hazard_classes=(1, 2), compute_safe_site=True,
                 ground_class: int = 0,
                 min_hazard_region_px: float = DEFAULT_MIN_HAZARD_REGION_PX,
                 upsampling: str = DEFAULT_UPSAMPLING, flip_average: bool = DEFAULT_FLIP_AVERAGE,
                 logit_offset=None, mono16_bits: int = 16):
        """`logit_offset`: None = the manifest's (none when it lists none); a sequence of one
        finite number per class replaces it (zeros: the network's own argmax).  `mono16_bits`:
        significant bits of mono16 frames (core/image_codec.full_scale)."""
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
        self.upsampling = check_upsampling(upsampling)
        self.flip_average = bool(flip_average)
        self.logit_offset = self._check_offset(
            manifest.logit_offset if logit_offset is None else logit_offset, manifest)
        # _logits sums the passes (the argmax of the sum is that of the mean), so the offset,
        # defined on the mean, is added once per pass: no per-frame division
        self._passes = 2 if self.flip_average else 1
        self._offset = (torch.tensor(self.logit_offset, dtype=torch.float32,
                                     device=engine.device).view(1, -1, 1, 1) * self._passes
                        if any(self.logit_offset) else None)
        self.preprocess = Preprocessor(manifest, engine.device, mono16_bits)
        self._hazard_lut = np.zeros(256, np.uint8)
        for c in self.hazard_classes:
            if not 0 <= c < 256:
                raise ValueError(f'hazard class {c} is outside 0..255')
            self._hazard_lut[c] = 255
        self._safe_site = SafeSiteFinder(self.hazard_classes, self.ground_class)
        self._ground_is_hazard = self.ground_class in self.hazard_classes
        self._plane_argmax = PlaneArgmax()
        self._bilinear_argmax = BilinearArgmax()

    @staticmethod
    def _check_offset(offset, manifest) -> tuple:
        """The manifest's rule for a logit_offset (core/manifest.logit_offset_problem)."""
        try:
            values = tuple(float(v) for v in offset)
        except (TypeError, ValueError):
            raise ValueError(f'logit_offset {offset!r} must be a list of numbers, one per '
                             'class') from None
        problem = logit_offset_problem(list(values), manifest.task, len(manifest.class_names))
        if problem:
            raise ValueError(problem)
        return values

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
        """classes=False: result.classes is None (saves a full-resolution copy or resize);
        safe_site: None = the constructor's compute_safe_site, False skips it."""
        height, width = image.shape[:2]
        logits = self._logits(self.preprocess(image, encoding))[0]
        h, w = logits.shape[1:]
        want_site = self.compute_safe_site if safe_site is None else bool(safe_site)
        if (h, w) == (height, width) or self.upsampling == 'bilinear':
            full = self._argmax_at(logits, width, height)    # a reused buffer
            hazard = cv2.LUT(full, self._hazard_lut)
            if self.min_hazard_region_px > 0:
                remove_specks(full, hazard, self.min_hazard_region_px, self.ground_class,
                              self._ground_is_hazard)
            site = self._safe_site(full) if want_site else None
            return SegmentationResult(full.copy() if classes else None, hazard, site)
        small = self._argmax_at(logits, w, h)
        hazard = cv2.LUT(small, self._hazard_lut)
        if self.min_hazard_region_px > 0:
            remove_specks(small, hazard, self.min_hazard_region_px * (h * w) / (height * width),
                          self.ground_class, self._ground_is_hazard)
        hazard = self._upsample(hazard, width, height)
        full = self._upsample(small, width, height) if classes else None
        site = (scale_site(self._safe_site(small), width / w, height / h)
                if want_site else None)
        return SegmentationResult(full, hazard, site)

    def scores(self, image: np.ndarray, encoding: str = 'rgb8') -> np.ndarray:
        """float32 (C, H, W) at the input resolution: the logits (averaged over the flip, plus
        the logit offset) bilinearly upsampled there, whose argmax is the 'bilinear' class map
        before speck removal (what spacenav calibrate segmentation searches over)."""
        height, width = image.shape[:2]
        logits = (self._logits(self.preprocess(image, encoding))[0] / self._passes
                  ).detach().float().cpu().numpy()
        if tuple(logits.shape[1:]) == (height, width):
            return np.array(logits, dtype=np.float32)
        return np.stack([cv2.resize(np.ascontiguousarray(p), (width, height),
                                    interpolation=cv2.INTER_LINEAR) for p in logits])

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """(1, C, h, w) logits of the preprocessed frame, plus the logit offset; with
        flip_average, the sum with those of the frame mirrored left-right, mirrored back (and
        twice the offset): the argmax of the mean."""
        logits = self._run(x)
        if self.flip_average:
            mirrored = self._run(torch.flip(x, dims=(3,)))
            if mirrored.shape != logits.shape:
                raise RuntimeError(f'{self.engine.model_path} returned {tuple(mirrored.shape)} '
                                   f'for the mirrored frame and {tuple(logits.shape)} for the '
                                   'frame')
            logits = logits + torch.flip(mirrored, dims=(3,))
        if self._offset is not None:
            if logits.shape[1] != self._offset.shape[1]:
                raise RuntimeError(f'{self.engine.model_path} returned {logits.shape[1]} class '
                                   f'planes for {self._offset.shape[1]} logit offsets')
            logits = logits + self._offset
        return logits

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.engine(x)
        if logits.dim() != 4 or logits.shape[0] != 1 or not 1 <= logits.shape[1] <= 256:
            raise RuntimeError(f'{self.engine.model_path} returned shape {tuple(logits.shape)}; '
                               'logits_nchw needs (1, 1 <= C <= 256, h, w)')
        return logits

    def _argmax_at(self, logits: torch.Tensor, width: int, height: int) -> np.ndarray:
        """(C, h, w) logits -> uint8 (height, width) class map: the argmax at the model
        resolution when that is the size asked, else of the bilinearly upsampled logits."""
        if logits.device.type != 'cpu':
            return torch_class_map(logits, width, height)
        planes = logits.detach().numpy()       # any memory layout; planes may be strided
        if tuple(planes.shape[1:]) == (height, width):
            return self._plane_argmax(planes)
        return self._bilinear_argmax(planes, width, height)

    @staticmethod
    def _upsample(small: np.ndarray, width: int, height: int) -> np.ndarray:
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
