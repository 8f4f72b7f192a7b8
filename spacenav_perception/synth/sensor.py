"""Camera sensor model shared by the synthetic renderers.

The renderers produce a noiseless radiance image (float, arbitrary units) as a torch tensor on
their device; this module turns it into what a navigation camera would write:

    radiance --(stars as point sources)--> PSF blur (Gaussian, optional defocus disc)
             --> electrons (exposure scaled so the bright part of the target reaches a random
                 fraction of the full well) + dark signal
             --> Poisson shot noise + Gaussian read noise --> ADC (black level, gain)
             --> quantisation to `bits` and clipping --> hot pixels

Every random draw comes from the numpy Generator passed in (never from torch's global RNG), so a
frame is reproducible from its seed and the draws do not depend on the device; the heavy array
work (blur, scaling) runs in torch on the radiance tensor's device.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class SensorParams:
    psf_sigma_px: float = 1.0       # Gaussian PSF standard deviation (pixels of the output)
    defocus_px: float = 0.0         # radius of an extra uniform defocus disc (0: in focus)
    full_well_e: float = 20000.0    # electrons at the top of the ADC range
    peak_fraction: float = 0.8      # bright target signal / full well (> 1 saturates)
    dark_e: float = 5.0             # mean dark + stray-light signal per pixel (electrons)
    read_noise_e: float = 10.0      # Gaussian read noise (electrons, rms)
    black_level_dn: float = 4.0     # offset added by the ADC (DN)
    n_stars: int = 0                # background stars drawn (only where the sky is)
    n_hot_pixels: int = 0           # stuck-bright pixels
    noise: bool = True              # False: no shot/read noise, no dark signal (test hook)
    bits: int = 8

    def as_dict(self) -> dict:
        return asdict(self)


def sample_sensor_params(rng: np.random.Generator, **overrides) -> SensorParams:
    """Random but plausible settings for one exposure. Overrides replace single fields."""
    p = SensorParams(
        psf_sigma_px=float(rng.uniform(0.5, 1.5)),
        defocus_px=float(rng.uniform(0.5, 1.5)) if rng.random() < 0.25 else 0.0,
        full_well_e=float(rng.uniform(8000.0, 40000.0)),
        # log-uniform: about a quarter of the frames saturate somewhere, some are dim
        peak_fraction=float(math.exp(rng.uniform(math.log(0.25), math.log(1.5)))),
        dark_e=float(rng.uniform(0.0, 30.0)),
        read_noise_e=float(rng.uniform(3.0, 25.0)),
        black_level_dn=float(rng.uniform(0.0, 10.0)),
        n_stars=int(rng.integers(1, 25)) if rng.random() < 0.35 else 0,
        n_hot_pixels=int(rng.integers(1, 30)) if rng.random() < 0.3 else 0,
    )
    for key, value in overrides.items():
        if not hasattr(p, key):
            raise TypeError(f'unknown sensor parameter {key!r}')
        setattr(p, key, value)
    return p


def psf_kernel(sigma_px: float, defocus_px: float = 0.0) -> np.ndarray:
    """Normalised 2-D PSF: Gaussian of `sigma_px` convolved with a uniform disc of `defocus_px`."""
    half = int(math.ceil(3.0 * max(sigma_px, 0.3) + defocus_px))
    ax = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-0.5 * (ax / max(sigma_px, 1e-6)) ** 2)
    kernel = np.outer(g, g)
    if defocus_px > 0:
        # Gaussian convolved with a uniform disc: average the Gaussian over points filling the
        # disc (8x8 sub-samples per pixel)
        sub = (np.arange(-int(math.ceil(defocus_px)) * 8, int(math.ceil(defocus_px)) * 8) + 0.5) / 8
        px, py = np.meshgrid(sub, sub)
        inside = px ** 2 + py ** 2 <= defocus_px ** 2
        px, py = px[inside], py[inside]
        gx = np.exp(-0.5 * ((ax[:, None] - px[None]) / sigma_px) ** 2)     # (K, P)
        gy = np.exp(-0.5 * ((ax[:, None] - py[None]) / sigma_px) ** 2)
        kernel = gy @ gx.T                                                    # rows y, cols x
    return kernel / kernel.sum()


def blur(image: torch.Tensor, sigma_px: float, defocus_px: float = 0.0,
         backend: str = 'auto') -> torch.Tensor:
    """Convolve an (H, W) float tensor with the PSF (edge pixels replicated).

    backend 'auto': OpenCV's SIMD filters for CPU tensors (much faster than a one-thread
    conv2d), torch convolutions on other devices; 'torch' / 'cv2' force one. Both apply the
    same kernel."""
    use_cv2 = backend == 'cv2' or (backend == 'auto' and image.device.type == 'cpu')
    if use_cv2:
        import cv2
        img = image.detach().cpu().numpy()
        if defocus_px <= 0:
            k1 = _gauss1d(sigma_px).astype(np.float32)
            out = cv2.sepFilter2D(img, -1, k1, k1, borderType=cv2.BORDER_REPLICATE)
        else:
            k2 = psf_kernel(sigma_px, defocus_px).astype(np.float32)
            out = cv2.filter2D(img, -1, k2, borderType=cv2.BORDER_REPLICATE)
        return torch.from_numpy(out)
    x = image[None, None]
    if defocus_px <= 0:
        g = torch.as_tensor(_gauss1d(sigma_px), dtype=image.dtype, device=image.device)
        half = g.numel() // 2
        x = F.pad(x, (half, half, half, half), mode='replicate')
        x = F.conv2d(x, g.view(1, 1, 1, -1))
        x = F.conv2d(x, g.view(1, 1, -1, 1))
    else:
        k = torch.as_tensor(psf_kernel(sigma_px, defocus_px), dtype=image.dtype,
                            device=image.device)
        half = k.shape[0] // 2
        x = F.pad(x, (half, half, half, half), mode='replicate')
        x = F.conv2d(x, k[None, None])
    return x[0, 0]


def _gauss1d(sigma_px: float) -> np.ndarray:
    half = int(math.ceil(3.0 * max(sigma_px, 0.3)))
    ax = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-0.5 * (ax / max(sigma_px, 1e-6)) ** 2)
    return g / g.sum()


def add_point_sources(image: torch.Tensor, xs, ys, fluxes) -> torch.Tensor:
    """Splat point sources (sub-pixel positions, total flux each) bilinearly into `image`."""
    h, w = image.shape
    xs = np.asarray(xs, np.float64)
    ys = np.asarray(ys, np.float64)
    fl = np.asarray(fluxes, np.float64)
    x0 = np.floor(xs).astype(np.int64)
    y0 = np.floor(ys).astype(np.int64)
    fx = xs - x0
    fy = ys - y0
    flat = image.view(-1)
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                        (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xx = x0 + dx
        yy = y0 + dy
        ok = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
        if ok.any():
            idx = torch.as_tensor(yy[ok] * w + xx[ok], device=image.device)
            val = torch.as_tensor(fl[ok] * wgt[ok], dtype=image.dtype, device=image.device)
            flat.index_add_(0, idx, val)
    return image


def star_field(rng: np.random.Generator, n: int, sky_mask: np.ndarray, reference_flux: float):
    """`n` stars at random sub-pixel positions where `sky_mask` (H, W bool) is True.

    Fluxes are log-uniform between 0.03 and 3 times `reference_flux` (the radiance of the bright
    part of the target, so the faint ones sink into the noise and the bright ones stand out).
    Returns (xs, ys, fluxes) numpy arrays (stars falling on the target are dropped).
    """
    h, w = sky_mask.shape
    xs = rng.uniform(-0.5, w - 0.5, n)
    ys = rng.uniform(-0.5, h - 0.5, n)
    fl = reference_flux * np.exp(rng.uniform(np.log(0.03), np.log(3.0), n))
    xi = np.clip(np.round(xs).astype(int), 0, w - 1)
    yi = np.clip(np.round(ys).astype(int), 0, h - 1)
    keep = sky_mask[yi, xi]
    return xs[keep], ys[keep], fl[keep]


def shot_noise(lam: np.ndarray, background: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson counts for mean `lam` (float64 array), fast for mostly-sky frames.

    Pixels exactly at the constant `background` mean (the sky) are drawn by inverse CDF from one
    table, pixels above 400 e- use the normal approximation N(lam, lam) (relative skew < 5 %
    of a sigma), the rest exact `rng.poisson`. Returns float64 counts."""
    out = np.empty_like(lam)
    sky = lam == background
    if sky.any():
        kmax = int(background + 12 * math.sqrt(background + 1) + 12)
        k = np.arange(kmax + 1)
        logpmf = k * math.log(max(background, 1e-300)) - background - np.array(
            [math.lgamma(i + 1) for i in k])
        cdf = np.cumsum(np.exp(logpmf))
        cdf[-1] = 1.0
        out[sky] = np.searchsorted(cdf, rng.random(int(sky.sum())), side='right')
    big = ~sky & (lam > 400)
    if big.any():
        lb = lam[big]
        out[big] = np.maximum(0.0, np.rint(lb + np.sqrt(lb) * rng.standard_normal(lb.shape)))
    rest = ~sky & ~big
    if rest.any():
        out[rest] = rng.poisson(lam[rest])
    return out


def expose(signal: torch.Tensor, params: SensorParams, rng: np.random.Generator,
           reference_level: float) -> tuple[np.ndarray, dict]:
    """Turn a blurred radiance image into a quantised frame.

    `reference_level` is the radiance that maps to `params.peak_fraction` of the full well.
    Returns (uint8 or uint16 (H, W) array, info dict with the exposure numbers used).
    """
    h, w = signal.shape
    gain_e = params.peak_fraction * params.full_well_e / max(float(reference_level), 1e-12)
    electrons = (signal.double() * gain_e).clamp_min(0).cpu().numpy()
    if params.noise:
        electrons = shot_noise(electrons + params.dark_e, params.dark_e, rng)
        electrons += params.read_noise_e * rng.standard_normal(electrons.shape, dtype=np.float32)
    top = (1 << params.bits) - 1
    dn = electrons * (top / params.full_well_e) + params.black_level_dn
    dn = np.clip(np.rint(dn), 0, top)
    n_sat = int((dn >= top).sum())
    if params.n_hot_pixels:
        hy = rng.integers(0, h, params.n_hot_pixels)
        hx = rng.integers(0, w, params.n_hot_pixels)
        dn[hy, hx] = np.maximum(dn[hy, hx], rng.uniform(0.3, 1.0, params.n_hot_pixels) * top)
        dn = np.rint(dn)
    out = dn.astype(np.uint8 if params.bits <= 8 else np.uint16)
    return out, {'gain_e_per_unit': gain_e, 'saturated_px': n_sat}
