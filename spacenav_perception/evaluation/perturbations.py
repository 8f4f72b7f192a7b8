"""Named image perturbations for robustness evaluation (`spacenav eval ... --perturb NAME`).

Each stands for something another camera or renderer would do differently from ours, applied
to every frame before the model sees it (labels untouched), so the same eval command measures
how much of a model's accuracy survives it:

    gain0.4 / gain0.5 / gain1.6 / gain2.5   exposure x k (bright parts clip, as they would)
    gamma0.6 / gamma1.6                     another tone curve (I ** g on the 0..1 scale)
    blur1.5                                 a wider point-spread function (Gaussian, sigma px)
    noise0.04                               Gaussian noise, sigma 4 % of full scale
    offset0.05                              a black level (+5 % of full scale)
    warm                                    a colour cast: R x 1.1, B x 0.8 (colour frames only)
    gray                                    colours dropped: BT.601 luma in R, G and B

Frames keep their dtype, shape and encoding. The noise is seeded per frame (its index), so a
run is reproducible. Colour perturbations leave mono frames unchanged.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..data.augment import add_noise, channel_gain, gain, gamma, gaussian_blur, offset

PERTURBATIONS = ('none', 'gain0.4', 'gain0.5', 'gain1.6', 'gain2.5', 'gamma0.6', 'gamma1.6',
                 'blur1.5', 'noise0.04', 'offset0.05', 'warm', 'gray')


def _colour_only(image: np.ndarray, fn) -> np.ndarray:
    return fn(image) if image.ndim == 3 and image.shape[2] == 3 else image


def _gray(image):
    luma = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return np.repeat(luma[:, :, None], 3, axis=2)


def perturb(image: np.ndarray, name: str, index: int = 0) -> np.ndarray:
    """`image` (H, W) or (H, W, 3) RGB, any integer or 0..1 float dtype -> the perturbed frame."""
    if name not in PERTURBATIONS:
        raise ValueError(f'unknown perturbation {name!r} (known: {", ".join(PERTURBATIONS)})')
    if name == 'none':
        return image
    if name.startswith('gain'):
        return gain(image, float(name[4:]))
    if name.startswith('gamma'):
        return gamma(image, float(name[5:]))
    if name.startswith('blur'):
        return gaussian_blur(image, float(name[4:]))
    if name.startswith('noise'):
        return add_noise(image, float(name[5:]), np.random.default_rng([7, index]))
    if name.startswith('offset'):
        return offset(image, float(name[6:]))
    if name == 'warm':
        return _colour_only(image, lambda rgb: channel_gain(rgb, (1.1, 1.0, 0.8)))
    return _colour_only(image, _gray)
