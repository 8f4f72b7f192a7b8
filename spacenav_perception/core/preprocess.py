"""Image array -> model input tensor (1, C, H, W) per the model manifest. ROS-free.

Per frame: pick the channels the model wants on the source's own sample type (a view for mono8
and rgb8; one cv2.cvtColor otherwise, two for YUV -> mono), resize with cv2 on that type (uint8
stays uint8: the cheapest resize), then one fused scale-and-shift into a float32 buffer that was allocated once:

    x = (sample / full_scale - mean) / std  =  sample * (1 / (full_scale * std)) - mean / std

Resize: manifest input.resize 'area' -> cv2.INTER_AREA, 'bilinear' -> INTER_LINEAR, 'nearest'
-> INTER_NEAREST_EXACT; all keep the project's pixel-centre convention (x -> (x + 0.5) s - 0.5).
32FC1 is clipped to [0, 1] first (like image_codec.to_mono_float); mono16 is scaled by
1 / (2**mono16_bits - 1) (default 16 bits: 1 / 65535), samples above that full scale clipped
(image_codec.full_scale). Colour -> mono uses BT.601 luma (cv2); Bayer frames are demosaiced
by the same cv2 call; YUV 4:2:2 frames are converted to RGB (and that to luma for mono models),
by image_codec.to_mono_samples / to_rgb_samples; 16-bit colour and Bayer frames stay
16-bit until the scaling (full scale 65535). Mono -> RGB replicates the channel (after the resize: a
third of the work). A 3-channel model whose manifest says input.color 'luma' gets colour frames
the same way (luma, replicated): a colour cast of the camera or renderer then cannot change what it sees.

On CPU the returned tensor is ONE preallocated buffer, overwritten by the next call: run the
model on it before preprocessing the next frame (the predictors do). On CUDA the resized samples
go through a pinned host buffer to the GPU in their source type (uint8 = a quarter of the bytes)
and are converted there into a preallocated device buffer.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from .image_codec import (FULL_SCALE, MONO_ENCODINGS, channels_of, full_scale,
                          to_mono_samples, to_rgb_samples)
from .manifest import ModelManifest

INTERPOLATION = {'area': cv2.INTER_AREA, 'bilinear': cv2.INTER_LINEAR,
                 'nearest': cv2.INTER_NEAREST_EXACT}
_NATIVE = {'mono8': np.uint8, 'mono16': np.uint16, '32FC1': np.float32}


class Preprocessor:
    """Callable: (image array, encoding) -> (1, C, H, W) float32 tensor on `device`."""

    def __init__(self, manifest: ModelManifest, device='cpu', mono16_bits: int = 16):
        spec = manifest.input
        self.mono16_full = full_scale('mono16', mono16_bits)   # ValueError for a bad count
        self.height, self.width, self.channels = spec.height, spec.width, spec.channels
        self.luma = self.channels == 1 or spec.color == 'luma'
        self.interpolation = INTERPOLATION[spec.resize]
        self.device = torch.device(device)
        mean = np.asarray(spec.per_channel(spec.mean), dtype=np.float64)
        std = np.asarray(spec.per_channel(spec.std), dtype=np.float64)
        self._inv_std = (1.0 / std).astype(np.float32)
        self._shift = (mean / std).astype(np.float32)
        self._has_shift = bool(np.any(self._shift != 0))
        self._same_per_channel = bool(np.all(self._inv_std == self._inv_std[0]) and
                                      np.all(self._shift == self._shift[0]))
        shape = (1, self.channels, self.height, self.width)
        self._on_cuda = self.device.type == 'cuda'
        if self._on_cuda:
            self._out = torch.empty(shape, dtype=torch.float32, device=self.device)
            self._staging = {}   # (dtype, shape) -> pinned host tensor
            self._scale_t = {}   # full scale -> (scale, shift) device tensors (C, 1, 1)
        else:
            self._buffer = np.empty(shape, dtype=np.float32)
            self._out = torch.from_numpy(self._buffer)

    # -- per-frame --------------------------------------------------------------------------
    def source_samples(self, image: np.ndarray, encoding: str):
        """(array with the model's channel count or mono, full-scale value) before resizing."""
        if encoding not in FULL_SCALE:
            raise ValueError(f'unsupported encoding {encoding!r}')
        expected = channels_of(encoding)
        if (expected == 1 and image.ndim != 2) or (expected > 1 and (
                image.ndim != 3 or image.shape[2] != expected)):
            raise ValueError(f'array of shape {image.shape} does not fit encoding {encoding!r}')
        if encoding in MONO_ENCODINGS:
            src = image if image.dtype == _NATIVE[encoding] else image.astype(_NATIVE[encoding])
            if encoding == '32FC1':
                src = np.clip(src, 0.0, 1.0)
            elif encoding == 'mono16' and self.mono16_full < 65535.0:
                src = np.minimum(src, np.uint16(self.mono16_full))
                return src, self.mono16_full
            return src, FULL_SCALE[encoding]
        # On the frame's own sample type (uint8, or uint16 for 16-bit colour and Bayer):
        # a view for rgb8, cv2 calls otherwise.
        if self.luma:
            return to_mono_samples(image, encoding), FULL_SCALE[encoding]
        return to_rgb_samples(image, encoding), FULL_SCALE[encoding]

    def resize(self, src: np.ndarray) -> np.ndarray:
        if src.shape[0] == self.height and src.shape[1] == self.width:
            return src
        return cv2.resize(src, (self.width, self.height), interpolation=self.interpolation)

    def __call__(self, image: np.ndarray, encoding: str = 'mono8') -> torch.Tensor:
        src, full = self.source_samples(image, encoding)
        small = self.resize(src)
        if self._on_cuda:
            return self._to_device(small, full)
        out = self._buffer[0]
        scale = self._inv_std / np.float32(full)
        if small.ndim == 2:
            np.multiply(small, scale[0], out=out[0], casting='unsafe')
            if self._has_shift:
                out[0] -= self._shift[0]
            for c in range(1, self.channels):   # mono model input from a mono source: replicate
                if self._same_per_channel:
                    out[c] = out[0]
                else:
                    np.multiply(small, scale[c], out=out[c], casting='unsafe')
                    out[c] -= self._shift[c]
        else:
            np.multiply(small.transpose(2, 0, 1), scale[:, None, None], out=out,
                        casting='unsafe')
            if self._has_shift:
                out -= self._shift[:, None, None]
        return self._out

    def _to_device(self, small: np.ndarray, full: float) -> torch.Tensor:
        small = np.ascontiguousarray(small)
        key = (small.dtype.str, small.shape)
        staging = self._staging.get(key)
        if staging is None:
            staging = torch.empty(small.shape, dtype=torch.from_numpy(small[:0]).dtype,
                                  pin_memory=True)
            self._staging[key] = staging
        staging.numpy()[...] = small
        on_device = staging.to(self.device, non_blocking=True)
        params = self._scale_t.get(full)
        if params is None:
            scale = torch.from_numpy(self._inv_std / np.float32(full)).view(-1, 1, 1)
            shift = torch.from_numpy(self._shift).view(-1, 1, 1)
            params = (scale.to(self.device), shift.to(self.device))
            self._scale_t[full] = params
        chw = on_device.unsqueeze(0) if on_device.dim() == 2 else on_device.permute(2, 0, 1)
        torch.mul(chw.float().expand(self.channels, -1, -1), params[0], out=self._out[0])
        if self._has_shift:
            self._out[0].sub_(params[1])
        return self._out
