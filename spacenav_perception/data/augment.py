"""Augmentations that keep labels exact.

Geometric operations are pure index operations (flips, 90-degree rotations, integer shifts and
crops with padding), so points and masks move exactly with the pixels:

    points: (N, 2) float array of (x, y) in the project's pixel convention (centre of the
            top-left pixel = (0, 0)); transformed with the same index map as the pixels.
    masks:  (H, W) or (H, W, C) arrays (class ids or colour masks), moved with the same index
            operation, never interpolated; padding uses `mask_fill`.

Photometric operations (gain, gamma, additive noise, Gaussian blur) change the image only.
Images may be uint8/uint16 or float in [0, 1]; the dtype is kept.

Every random choice comes from the numpy Generator passed in, so a (seed, sample) pair always
gives the same augmentation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


# Ranges of the trainers' image-only augmentation (training/centroid_task.py and
# segmentation_task.py say what each means for their task): 'narrow', the recipes of sessions
# 1-7, and 'wide', which adds a point-spread blur (and for the centroid wider exposure, gamma,
# noise and a black level).
PHOTOMETRIC_MODES = ('narrow', 'wide')


def _pts(points):
    return None if points is None else np.asarray(points, np.float64).reshape(-1, 2).copy()


def hflip(image, points=None, mask=None):
    """Mirror left-right: x -> W - 1 - x."""
    w = image.shape[1]
    p = _pts(points)
    if p is not None:
        p[:, 0] = (w - 1) - p[:, 0]
    return (np.ascontiguousarray(image[:, ::-1]), p,
            None if mask is None else np.ascontiguousarray(mask[:, ::-1]))


def vflip(image, points=None, mask=None):
    """Mirror top-bottom: y -> H - 1 - y."""
    h = image.shape[0]
    p = _pts(points)
    if p is not None:
        p[:, 1] = (h - 1) - p[:, 1]
    return (np.ascontiguousarray(image[::-1]), p,
            None if mask is None else np.ascontiguousarray(mask[::-1]))


def rot90(image, k=1, points=None, mask=None):
    """Rotate by k * 90 degrees counter-clockwise as displayed (numpy.rot90 on axes (0, 1)).
    One step maps (x, y) -> (y, W - 1 - x); the output is W x H."""
    k = int(k) % 4
    p = _pts(points)
    img, msk = image, mask
    for _ in range(k):
        w = img.shape[1]
        if p is not None:
            p = np.stack([p[:, 1], (w - 1) - p[:, 0]], 1)
        img = np.rot90(img, 1, axes=(0, 1))
        if msk is not None:
            msk = np.rot90(msk, 1, axes=(0, 1))
    return (np.ascontiguousarray(img), p, None if msk is None else np.ascontiguousarray(msk))


def crop(image, x0: int, y0: int, width: int, height: int, points=None, mask=None,
         fill=0, mask_fill=0):
    """Window [x0, x0 + width) x [y0, y0 + height) (integers, may extend past the image: padded
    with `fill` / `mask_fill`). Points move by (-x0, -y0)."""
    x0, y0, width, height = int(x0), int(y0), int(width), int(height)

    def cut(a, value):
        out = np.full((height, width) + a.shape[2:], value, dtype=a.dtype)
        h, w = a.shape[:2]
        sx0, sy0 = max(0, x0), max(0, y0)
        sx1, sy1 = min(w, x0 + width), min(h, y0 + height)
        if sx1 > sx0 and sy1 > sy0:
            out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = a[sy0:sy1, sx0:sx1]
        return out

    p = _pts(points)
    if p is not None:
        p -= (x0, y0)
    return cut(image, fill), p, None if mask is None else cut(mask, mask_fill)


def shift(image, dx: int, dy: int, points=None, mask=None, fill=0, mask_fill=0):
    """Move the content by integer (dx, dy) pixels (same size, padded): points + (dx, dy)."""
    h, w = image.shape[:2]
    return crop(image, -int(dx), -int(dy), w, h, points, mask, fill, mask_fill)


def _as_float(image):
    if np.issubdtype(image.dtype, np.integer):
        top = np.iinfo(image.dtype).max
        return image.astype(np.float32) / top, top
    return image.astype(np.float32, copy=False), None


def _back(f, top, dtype):
    f = np.clip(f, 0.0, 1.0)
    if top is None:
        return f.astype(dtype, copy=False)
    return np.rint(f * top).astype(dtype)


def gain(image, g: float):
    f, top = _as_float(image)
    return _back(f * g, top, image.dtype)


def channel_gain(image, gains):
    """Per-channel gain of an (H, W, C) image (a colour cast), clipped to the full scale."""
    f, top = _as_float(image)
    return _back(f * np.asarray(gains, np.float32), top, image.dtype)


def offset(image, value: float):
    """Add `value` (units of the full scale: a black level), clipped."""
    f, top = _as_float(image)
    return _back(f + np.float32(value), top, image.dtype)


def gamma(image, gm: float):
    f, top = _as_float(image)
    return _back(np.power(np.clip(f, 0, 1), gm), top, image.dtype)


def add_noise(image, sigma: float, rng: np.random.Generator):
    """Additive Gaussian noise, `sigma` in units of the full scale (0..1)."""
    f, top = _as_float(image)
    return _back(f + rng.normal(0.0, sigma, f.shape).astype(np.float32), top, image.dtype)


def gaussian_blur(image, sigma: float):
    import cv2
    if sigma <= 0:
        return image
    f, top = _as_float(image)
    return _back(cv2.GaussianBlur(f, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE),
                 top, image.dtype)


@dataclass
class Photometric:
    """Image-only augmentation shared by the asteroid and lunar augmenters: gain, gamma,
    Gaussian noise and blur, each with its probability. Labels and masks are untouched."""
    p_gain: float = 0.5
    gain_range: tuple = (0.6, 1.5)
    p_gamma: float = 0.3
    gamma_range: tuple = (0.7, 1.4)
    p_noise: float = 0.3
    noise_sigma: tuple = (0.0, 0.03)
    p_blur: float = 0.2
    blur_sigma: tuple = (0.3, 1.2)

    def photometric(self, img, rng: np.random.Generator):
        if rng.random() < self.p_gain:
            img = gain(img, rng.uniform(*self.gain_range))
        if rng.random() < self.p_gamma:
            img = gamma(img, rng.uniform(*self.gamma_range))
        if rng.random() < self.p_noise:
            img = add_noise(img, rng.uniform(*self.noise_sigma), rng)
        if rng.random() < self.p_blur:
            img = gaussian_blur(img, rng.uniform(*self.blur_sigma))
        return img


@dataclass
class Augmenter(Photometric):
    """Random label-exact augmentation. Call with (image, points=None, mask=None, rng).

    Geometric: hflip/vflip with probability p_flip each, a random multiple of 90 degrees with
    p_rot90 (only square images unless allow_transpose), an integer shift of up to
    max_shift_frac of the size with p_shift (padding with 0). `keep_points_inside`: shifts are
    limited so every point stays inside the image.
    Photometric (image only): gain, gamma, Gaussian noise, blur, each with its probability."""
    p_flip: float = 0.5
    p_rot90: float = 0.5
    allow_transpose: bool = False
    p_shift: float = 0.5
    max_shift_frac: float = 0.15
    keep_points_inside: bool = True
    fill: float = 0
    mask_fill: int = 0

    def __call__(self, image, points=None, mask=None, rng: np.random.Generator = None):
        rng = rng if rng is not None else np.random.default_rng()
        img, p, m = image, _pts(points), mask
        if rng.random() < self.p_flip:
            img, p, m = hflip(img, p, m)
        if rng.random() < self.p_flip:
            img, p, m = vflip(img, p, m)
        if rng.random() < self.p_rot90 and (img.shape[0] == img.shape[1] or self.allow_transpose):
            img, p, m = rot90(img, int(rng.integers(1, 4)), p, m)
        if rng.random() < self.p_shift:
            h, w = img.shape[:2]
            mx, my = int(self.max_shift_frac * w), int(self.max_shift_frac * h)
            lo_x, hi_x, lo_y, hi_y = -mx, mx, -my, my
            if self.keep_points_inside and p is not None and len(p):
                lo_x = max(lo_x, int(np.ceil(-0.5 - p[:, 0].min())))
                hi_x = min(hi_x, int(np.floor(w - 0.5 - p[:, 0].max())) - 1)
                lo_y = max(lo_y, int(np.ceil(-0.5 - p[:, 1].min())))
                hi_y = min(hi_y, int(np.floor(h - 0.5 - p[:, 1].max())) - 1)
            dx = int(rng.integers(lo_x, hi_x + 1)) if hi_x >= lo_x else 0
            dy = int(rng.integers(lo_y, hi_y + 1)) if hi_y >= lo_y else 0
            img, p, m = shift(img, dx, dy, p, m, self.fill, self.mask_fill)
        img = self.photometric(img, rng)
        return img, p, m
