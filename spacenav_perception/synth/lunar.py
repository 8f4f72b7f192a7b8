"""Procedural lunar-surface renderer with per-pixel ground / small rock / large rock / sky labels.

Writes data in the layout of the Kaggle "Artificial Lunar Rocky Landscape" set so that one loader
(`data/lunar_dataset.py`) reads both:

    DIR/images/render/renderNNNN.png   RGB image (default 720 x 480)
    DIR/images/ground/groundNNNN.png   full label mask, palette below
    DIR/images/clean/cleanNNNN.png     the same mask with tiny rocks relabelled ground
    DIR/meta.csv                       one row per image: sun, camera, rock counts, class fractions

Numbering is 1-based and at least 4 digits: image index i (0-based) is ``render{i+1:04d}.png``.

Palette (RGB): ground (0,0,0), small rock (0,255,0), large rock (0,0,255), sky (255,0,0); class ids
0, 1, 2, 3 in that order (see `CLASS_NAMES`, `PALETTE`).

Scene model
-----------
* Terrain: a height field = a coarse 1 km x 1 km grid (1 m cells: fractal relief + craters of
  8-200 m) plus a fine detail grid (6 cm cells over ~72 m in front of the camera: fractal relief
  at decimetre-metre scales + craters of 0.4-12 m). Craters are bowls with raised rims and an
  ejecta apron that decays with distance.
* Rocks: partly buried ellipsoids (most are the union of two ellipsoid lobes, so outlines are
  irregular). Diameters follow a power-law size-frequency distribution, N(>D) ~ D^-2.5, from 4 cm
  to ~4 m, plus a boulder field in front of the camera (Poisson mean 1.5-9 rocks of 0.9-4 m
  within 2.5-25 m), so that large rocks cover a few per cent of the pixels on average.
* **Small vs large rock (physical rule):** a rock is *large* when its top stands at least
  ``LARGE_ROCK_HEIGHT_M = 0.30`` m above the ground under its centre, i.e. it is a landing hazard
  at the 30 cm rock-height limit commonly used for lunar-lander hazard detection and avoidance;
  any lower rock is *small*. The rule uses protrusion height, not diameter, because a deeply
  buried wide rock is harmless to a landing leg while a perched one is not.
* **Clean masks:** in ``clean*.png`` a rock whose *visible* area in this image is below
  ``min_rock_pixels(width, height)`` pixels (30 px at 720 x 480, scaled with the image area,
  never below 4) is relabelled ground. Nothing is ever relabelled to rock, so clean rock pixels
  are a subset of ground-mask rock pixels.
* Sun: elevation 3-25 deg (low, long hard shadows), any azimuth. Cast shadows from terrain come
  from a horizon sweep over the height field; shadows from rocks are traced analytically against
  the rock ellipsoids. Shadowed ground stays *ground* in the labels.
* Shading: lunar-Lambert (McEwen's phase-dependent limb-darkening parameter, per pixel's phase
  angle) with a small ambient term (light scattered from sunlit terrain). Option
  ``reflectance='varied'`` (``spacenav synth lunar --reflectance varied``): each view draws a
  lunar-Lambert law with a constant limb weight, a Minnaert or a Hapke law (``reflectance.py``;
  column ``reflectance`` in meta.csv), scaled so that its median over the sunlit pixels equals
  McEwen's (the ambient term keeps its meaning: a fraction of the typical sunlit radiance); the
  scene, sensor and noise are those of the default mode for the same seed and index.
  Rocks carry the same regolith albedo texture as the ground times a per-rock factor of
  0.85-1.3, so they are not separable by colour:
  the labels have to be learnt from shape, shading and shadow context. Regolith albedo varies
  within a view (fractal albedo maps at metre and centimetre scales) and between views (texture
  contrast x0.6-2; `regolith_albedo` in meta.csv is the nominal normal albedo, which the
  auto-exposure normalises away).
* Camera: 1-3 m above the ground, horizontal FOV 50-70 deg, roll within +-6 deg. About 80 % of
  views show the horizon (black sky above it, horizon placed so ~15-45 % of the frame is sky);
  about 20 % are pitched down far enough that no sky is visible.
* Sensor: optical blur (Gaussian, 0.4-0.9 px), vignetting, shot noise (full well 6000-20000 e-),
  read noise (2-10 e-), a slight warm-grey tint, gamma 1/2.2, 8 bit.

Determinism: every image is rendered from its own generator seeded by (seed, index), so a given
(seed, index) gives identical bytes on the same device/torch build whatever `n` or
`start_index` is used.

Speed (2-core CPU shared with other jobs, load average ~6-7): one render costs ~1.0 CPU-s at
720 x 480 and ~0.5 CPU-s at 360 x 240 (one thread; scene synthesis ~0.2 s of it); `render_dataset`
runs one process per core, measured 0.48 images/s at 720 x 480 under that load.
On CUDA everything except PNG writing and the noise draw runs on the GPU.

Interrupted runs: each PNG is written to a temporary name and renamed, and `meta.csv` is written
only after the last image (temporary file + rename). A directory without `meta.csv`, or whose
`meta.csv` lacks rows for some images, is an incomplete render.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spacenav_perception.synth.dataset_files import DirLock, read_rows, write_csv_atomic
from spacenav_perception.synth.reflectance import ReflectanceLaw, frame_law, mcewen_weight
from spacenav_perception.synth.sensor import blur as sensor_blur, expose, sample_sensor_params

from spacenav_perception.core.lunar_classes import (  # noqa: F401  (re-exported)
    CLASS_NAMES, GROUND, LARGE_ROCK, PALETTE, SKY, SMALL_ROCK)

LARGE_ROCK_HEIGHT_M = 0.30          # protrusion above the local ground that makes a rock "large"
CLEAN_MIN_ROCK_PIXELS_720x480 = 30  # visible area below which a rock is ground in clean masks

META_FIELDS = (
    'image_name', 'seed', 'index', 'width', 'height',
    'sun_elevation_deg', 'sun_azimuth_deg', 'sun_azimuth_rel_camera_deg',
    'camera_height_m', 'camera_pitch_deg', 'camera_roll_deg', 'camera_yaw_deg', 'hfov_deg',
    'has_sky', 'n_rocks_scene', 'n_rocks_small', 'n_rocks_large',
    'n_rocks_small_clean', 'n_rocks_large_clean',
    'frac_ground', 'frac_small_rock', 'frac_large_rock', 'frac_sky',
    'clean_frac_small_rock', 'clean_frac_large_rock', 'clean_min_rock_pixels',
    'regolith_albedo', 'albedo_contrast', 'relief_rms_m', 'n_craters', 'blur_sigma_px',
    'read_noise_e', 'full_well_e', 'peak_fraction', 'vignetting', 'gamma', 'reflectance',
)


def min_rock_pixels(width: int, height: int) -> int:
    """Visible area (pixels) under which a rock is relabelled ground in clean masks."""
    return max(4, int(round(CLEAN_MIN_ROCK_PIXELS_720x480 * width * height / (720 * 480))))


def resolve_device(device='auto') -> torch.device:
    if device in (None, 'auto'):
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    dev = torch.device(device)
    if dev.type == 'cuda' and not torch.cuda.is_available():
        return torch.device('cpu')
    return dev


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of image `index` in a data set rendered with `seed`."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index)]))


# ----------------------------------------------------------------------------------------------
# Height grids
# ----------------------------------------------------------------------------------------------
class _Grid:
    """A square grid of C channels; cell centres at x0 + i * cell, y0 + j * cell (row j)."""

    def __init__(self, data: torch.Tensor, x0: float, y0: float, cell: float):
        self.data = data if data.dim() == 4 else data[None, None]
        self.x0, self.y0, self.cell = float(x0), float(y0), float(cell)
        self.n = self.data.shape[-1]

    def norm(self, x, y):
        span = self.cell * (self.n - 1)
        return (x - self.x0) / span * 2 - 1, (y - self.y0) / span * 2 - 1

    def sample(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Bilinear samples, (C, M); zero outside the grid."""
        gx, gy = self.norm(x.reshape(-1), y.reshape(-1))
        g = torch.stack([gx, gy], -1)[None, None]
        out = F.grid_sample(self.data, g, mode='bilinear', padding_mode='zeros', align_corners=True)
        return out[0, :, 0]

    def coords(self):
        dev = self.data.device
        ax = torch.arange(self.n, device=dev, dtype=torch.float32) * self.cell
        return self.x0 + ax, self.y0 + ax   # x of columns, y of rows


def _fractal(n, cell, beta, gen, device, lmax=None, lmin=None):
    """Zero-mean unit-std fractal field with power spectrum ~ f^-beta (band-limited)."""
    w = torch.randn(n, n, generator=gen).to(device)
    spec = torch.fft.rfft2(w)
    fy = torch.fft.fftfreq(n, d=cell, device=device)[:, None]
    fx = torch.fft.rfftfreq(n, d=cell, device=device)[None, :]
    f = torch.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amp = f ** (-beta / 2)
    amp[0, 0] = 0.0
    if lmax is not None:                   # suppress wavelengths longer than lmax
        amp = amp * (1 - torch.exp(-(f * lmax) ** 2))
    if lmin is not None:                   # suppress wavelengths shorter than lmin
        amp = amp * torch.exp(-(f * lmin) ** 2)
    out = torch.fft.irfft2(spec * amp, s=(n, n))
    return (out - out.mean()) / (out.std() + 1e-12)


def _add_craters(h, xs, ys, craters):
    """Add crater profiles to height grid h (rows = y). craters: iterable of (cx, cy, D, depth_ratio,
    rim_ratio)."""
    cell = float(xs[1] - xs[0])
    x0, y0 = float(xs[0]), float(ys[0])
    n = h.shape[-1]
    for cx, cy, d, dr, rr in craters:
        rad = d / 2
        reach = 2.5 * rad
        i0 = max(0, int((cx - reach - x0) / cell)); i1 = min(n, int((cx + reach - x0) / cell) + 2)
        j0 = max(0, int((cy - reach - y0) / cell)); j1 = min(n, int((cy + reach - y0) / cell) + 2)
        if i1 <= i0 or j1 <= j0:
            continue
        dx = xs[i0:i1][None, :] - cx
        dy = ys[j0:j1][:, None] - cy
        r = torch.sqrt(dx * dx + dy * dy) / rad
        depth, rim = dr * d, rr * d
        inside = rim - (depth + rim) * (1 - r * r) ** 1.0
        k = 2.5 ** -3
        outside = rim * (torch.clamp(r, min=1.0) ** -3 - k) / (1 - k)
        prof = torch.where(r < 1, inside, torch.clamp(outside, min=0.0))
        h[j0:j1, i0:i1] += prof


def _crater_list(rng, n, dmin, dmax, region):
    """n craters with D ~ power law (cumulative slope -2) inside region (x0, x1, y0, y1)."""
    u = rng.random(n)
    b = 2.0
    d = dmin * (1 - u * (1 - (dmin / dmax) ** b)) ** (-1 / b)
    x = rng.uniform(region[0], region[1], n)
    y = rng.uniform(region[2], region[3], n)
    fresh = rng.random(n)
    depth_ratio = 0.05 + 0.15 * fresh             # degraded 0.05 .. fresh 0.2
    rim_ratio = 0.01 + 0.035 * fresh
    return list(zip(x, y, d, depth_ratio, rim_ratio))


# ----------------------------------------------------------------------------------------------
# Scene description
# ----------------------------------------------------------------------------------------------
@dataclass
class Camera:
    x: float
    y: float
    height: float            # above the ground under the camera
    yaw_deg: float           # azimuth of the optical axis, deg from +x towards +y
    pitch_deg: float         # elevation of the optical axis (negative = looking down)
    roll_deg: float
    hfov_deg: float
    z: float = 0.0           # absolute, set when the terrain is known


@dataclass
class Scene:
    width: int
    height: int
    camera: Camera
    sun_elevation_deg: float
    sun_azimuth_deg: float
    coarse: _Grid                        # channels: height, albedo factor
    fine: _Grid                          # channels: height detail (added to coarse), albedo factor
    rock_center: torch.Tensor            # (P, 3) ellipsoid lobes
    rock_M: torch.Tensor                 # (P, 3, 3): |M (x - c)| <= 1 inside
    rock_R: torch.Tensor                 # (P, 3, 3): lobe axes (columns) in world coordinates
    rock_radius: torch.Tensor            # (P,) bounding sphere radius of the lobe
    lobe_rock: torch.Tensor              # (P,) rock index of each lobe
    rock_class: torch.Tensor             # (R,) SMALL_ROCK or LARGE_ROCK
    rock_albedo: torch.Tensor            # (R,)
    params: dict = field(default_factory=dict)
    reflectance: ReflectanceLaw = field(default_factory=ReflectanceLaw)


def _rotation(yaw, tilt_axis_angle, tilt):
    """Rotation matrices (N,3,3): yaw about z, then tilt about a horizontal axis."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    rz = np.zeros((len(yaw), 3, 3)); rz[:, 0, 0] = cy; rz[:, 0, 1] = -sy; rz[:, 1, 0] = sy
    rz[:, 1, 1] = cy; rz[:, 2, 2] = 1
    ax = np.stack([np.cos(tilt_axis_angle), np.sin(tilt_axis_angle), np.zeros_like(tilt)], -1)
    k = np.zeros((len(yaw), 3, 3))
    k[:, 0, 1] = -ax[:, 2]; k[:, 0, 2] = ax[:, 1]; k[:, 1, 0] = ax[:, 2]
    k[:, 1, 2] = -ax[:, 0]; k[:, 2, 0] = -ax[:, 1]; k[:, 2, 1] = ax[:, 0]
    st, ct = np.sin(tilt)[:, None, None], np.cos(tilt)[:, None, None]
    rt = np.eye(3)[None] + st * k + (1 - ct) * (k @ k)
    return rt @ rz


def _sample_rocks(rng, cam: Camera, rock_density, boulders):
    """Rock list (centre xy, diameter) in a sector in front of the camera."""
    half = math.radians(cam.hfov_deg / 2 + 20)
    yaw = math.radians(cam.yaw_deg)
    zones = ((1.0, 10.0, 0.04), (10.0, 25.0, 0.08), (25.0, 50.0, 0.16), (50.0, 160.0, 0.4))
    b = 2.5
    dmax = 4.0
    xs, ys, ds = [], [], []
    for r0, r1, dmin in zones:
        area = half * (r1 * r1 - r0 * r0)
        lam = area * rock_density * (dmin / 0.3) ** -b     # rock_density = N(D >= 0.3 m) per m^2
        n = rng.poisson(lam)
        r = np.sqrt(rng.uniform(r0 * r0, r1 * r1, n))
        a = yaw + rng.uniform(-half, half, n)
        u = rng.random(n)
        d = dmin * (1 - u * (1 - (dmin / dmax) ** b)) ** (-1 / b)
        xs.append(cam.x + r * np.cos(a)); ys.append(cam.y + r * np.sin(a)); ds.append(d)
    # a boulder field: a few hazard-sized rocks in the near field of view
    nb = rng.poisson(boulders)
    r = rng.uniform(2.5, 25.0, nb)
    a = yaw + rng.uniform(-1, 1, nb) * math.radians(cam.hfov_deg / 2 + 5)
    u = rng.random(nb)
    d = 0.9 * (1 - u * (1 - (0.9 / 4.0) ** 1.8)) ** (-1 / 1.8)
    xs.append(cam.x + r * np.cos(a)); ys.append(cam.y + r * np.sin(a)); ds.append(d)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ds)


def _build_rocks(rng, x, y, diam, ground_z, buried=None, axes=None, single_lobe=False):
    """Ellipsoid lobes for rocks at (x, y) with diameters diam. Returns numpy arrays."""
    n = len(x)
    a = diam / 2
    b_ = a * rng.uniform(0.55, 1.0, n)
    c = a * rng.uniform(0.35, 0.8, n)
    if axes is not None:                  # fixed shape (test hook): (b/a, c/a)
        b_, c = a * float(axes[0]), a * float(axes[1])
    yaw = rng.uniform(0, 2 * np.pi, n)
    tilt = np.radians(rng.uniform(0, 20, n))
    tilt_ax = rng.uniform(0, 2 * np.pi, n)
    rot = _rotation(yaw, tilt_ax, tilt)
    bury = rng.uniform(-0.45, 0.3, n) if buried is None else np.full(n, float(buried))
    cz = ground_z + c * bury
    centers = [np.stack([x, y, cz], -1)]
    semis = [np.stack([a, b_, c], -1)]
    rots = [rot]
    owner = [np.arange(n)]
    # second lobe for ~70 % of rocks: irregular outlines
    two = (rng.random(n) < 0.7) & (not single_lobe)
    idx = np.nonzero(two)[0]
    if len(idx):
        off_local = np.stack([rng.uniform(-0.5, 0.5, len(idx)) * a[idx],
                              rng.uniform(-0.5, 0.5, len(idx)) * b_[idx],
                              rng.uniform(-0.35, 0.05, len(idx)) * c[idx]], -1)
        off = np.einsum('nij,nj->ni', rot[idx], off_local)
        scale = rng.uniform(0.5, 0.8, (len(idx), 1))
        rot2 = _rotation(yaw[idx] + rng.uniform(-0.8, 0.8, len(idx)), tilt_ax[idx],
                         np.radians(rng.uniform(0, 25, len(idx))))
        centers.append(centers[0][idx] + off)
        semis.append(semis[0][idx] * scale)
        rots.append(rot2)
        owner.append(idx)
    center = np.concatenate(centers)
    semi = np.concatenate(semis)
    rot = np.concatenate(rots)
    owner = np.concatenate(owner)
    # |M (p - c)| <= 1 with M = S^-1 R^T
    m = np.transpose(rot, (0, 2, 1)) / semi[:, :, None]
    # vertical extent of each lobe: |S R^T e_z|
    zext = np.sqrt(((semi * rot[:, 2, :]) ** 2).sum(-1))
    top = center[:, 2] + zext
    rock_top = np.full(n, -np.inf)
    np.maximum.at(rock_top, owner, top)
    protrusion = rock_top - ground_z
    radius = semi.max(-1)
    return center, m, radius, owner, protrusion, rot


def sample_camera(rng, width=720, height=480) -> Camera:
    """Random rover/lander camera at (0, 0): 1-3 m above the ground, HFOV 50-70 deg, roll +-6 deg.
    20 %: pitched down so far that no sky is visible; otherwise the horizon row is placed at
    15-42 % of the height from the top (10 % of those: 42-60 %, camera slightly up)."""
    hfov = rng.uniform(50, 70)
    roll = rng.uniform(-6, 6)
    cam_h = rng.uniform(1.0, 3.0)
    yaw = rng.uniform(-180, 180)
    fx = (width / 2) / math.tan(math.radians(hfov / 2))
    cy = height / 2 - 0.5
    if rng.random() < 0.2:     # pitched down, no sky
        corner = cy + abs(math.tan(math.radians(roll))) * width / 2
        min_down = math.degrees(math.atan(corner / fx)) + 3.0
        pitch = -min(75.0, min_down + rng.uniform(0, 30))
    else:                      # horizon in view: choose the horizon row
        hf = rng.uniform(0.15, 0.42) if rng.random() < 0.9 else rng.uniform(0.42, 0.6)
        pitch = math.degrees(math.atan((hf * height - 0.5 - cy) / fx))
    return Camera(0.0, 0.0, cam_h, yaw, pitch, roll, hfov)


def sample_scene(rng, width=720, height=480, device='cpu', overrides=None,
                 reflectance='lunar-lambert') -> Scene:
    """Draw a random scene. `reflectance`: 'lunar-lambert' (McEwen's law, the default) or
    'varied' (see reflectance.py), drawn from a stream spawned from `rng` so that every other
    draw is the default mode's. `overrides` (tests, demos) may set:
    'flat': True (no relief, no craters), 'rocks': [(x, y, diameter), ...] replacing the random
    rocks (optionally 'rock_bury': centre offset in units of the vertical semi-axis,
    'rock_axes': (b/a, c/a) fixed semi-axis ratios, 'single_lobe': True),
    'camera': dict of Camera fields, 'sun_elevation_deg', 'sun_azimuth_deg', 'noise': False,
    'boulders', 'rock_density'."""
    ov = dict(overrides or {})
    device = torch.device(device)
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2 ** 62)))

    cam = sample_camera(rng, width, height)
    cam_kw = ov.get('camera', {})
    for k, v in cam_kw.items():
        setattr(cam, k, v)

    sun_el = float(ov.get('sun_elevation_deg', rng.uniform(3, 25)))
    sun_az = float(ov.get('sun_azimuth_deg', rng.uniform(-180, 180)))
    flat = bool(ov.get('flat', False))

    # --- terrain ------------------------------------------------------------------------------
    n0, c0 = 1024, 1.0
    x0 = cam.x - c0 * (n0 - 1) / 2
    y0 = cam.y - c0 * (n0 - 1) / 2
    relief = rng.uniform(0.4, 2.5)
    coarse_h = _fractal(n0, c0, 3.2, gen, device) * relief
    coarse_alb = 1 + 0.12 * _fractal(n0, c0, 2.0, gen, device, lmin=3.0)
    nf, cf = 1200, 0.06
    fwd = np.array([math.cos(math.radians(cam.yaw_deg)), math.sin(math.radians(cam.yaw_deg))])
    fc = np.array([cam.x, cam.y]) + 26.0 * fwd
    fx0 = float(np.round((fc[0] - cf * (nf - 1) / 2) / cf) * cf)
    fy0 = float(np.round((fc[1] - cf * (nf - 1) / 2) / cf) * cf)
    fine_rms = rng.uniform(0.01, 0.05)
    fine_h = _fractal(nf, cf, 2.8, gen, device, lmax=6.0) * fine_rms
    fine_alb = 1 + 0.07 * _fractal(nf, cf, 1.6, gen, device) \
        + 0.05 * _fractal(nf, cf, 2.6, gen, device, lmin=0.5)
    n_craters = 0
    if flat:
        coarse_h.zero_(); fine_h.zero_(); relief = 0.0; fine_rms = 0.0
    else:
        cxs = x0 + torch.arange(n0, device=device, dtype=torch.float32) * c0
        cys = y0 + torch.arange(n0, device=device, dtype=torch.float32) * c0
        big = _crater_list(rng, int(rng.integers(15, 60)), 8.0, 200.0,
                           (x0, x0 + n0 * c0, y0, y0 + n0 * c0))
        _add_craters(coarse_h, cxs, cys, big)
        fxs = fx0 + torch.arange(nf, device=device, dtype=torch.float32) * cf
        fys = fy0 + torch.arange(nf, device=device, dtype=torch.float32) * cf
        small = _crater_list(rng, int(rng.integers(20, 120)), 0.4, 12.0,
                             (fx0, fx0 + nf * cf, fy0, fy0 + nf * cf))
        _add_craters(fine_h, fxs, fys, small)
        n_craters = len(big) + len(small)
    # fade the fine detail to zero at the border of its grid (continuous with the coarse grid)
    ramp = torch.clamp(torch.minimum(torch.arange(nf, device=device),
                                     torch.arange(nf, device=device).flip(0)) * cf / 3.0, 0, 1)
    fade = (ramp[:, None] * ramp[None, :])
    fine_h = fine_h * fade
    fine_alb = 1 + (fine_alb - 1) * fade
    coarse = _Grid(torch.stack([coarse_h, coarse_alb])[None], x0, y0, c0)
    fine = _Grid(torch.stack([fine_h, fine_alb])[None], fx0, fy0, cf)

    def ground(xn, yn):
        xt = torch.as_tensor(xn, dtype=torch.float32, device=device)
        yt = torch.as_tensor(yn, dtype=torch.float32, device=device)
        return (coarse.sample(xt, yt)[0] + fine.sample(xt, yt)[0]).cpu().numpy().astype(np.float64)

    cam.z = float(ground([cam.x], [cam.y])[0]) + cam.height

    # --- rocks --------------------------------------------------------------------------------
    rock_density = float(ov.get('rock_density', math.exp(rng.uniform(math.log(0.02), math.log(0.15)))))
    boulders = float(ov.get('boulders', rng.uniform(1.5, 9.0)))
    if 'rocks' in ov:
        arr = np.asarray(ov['rocks'], dtype=np.float64).reshape(-1, 3)
        rx, ry, rd = arr[:, 0], arr[:, 1], arr[:, 2]
    else:
        rx, ry, rd = _sample_rocks(rng, cam, rock_density, boulders)
    if len(rx):
        gz = ground(rx, ry)
        center, m, radius, owner, protrusion, rot = _build_rocks(rng, rx, ry, rd, gz, ov.get('rock_bury'), ov.get('rock_axes'),
                                                                  bool(ov.get('single_lobe', False)))
    else:
        center = np.zeros((0, 3)); m = np.zeros((0, 3, 3)); radius = np.zeros(0)
        rot = np.zeros((0, 3, 3))
        owner = np.zeros(0, np.int64); protrusion = np.zeros(0)
    rock_class = np.where(protrusion >= LARGE_ROCK_HEIGHT_M, LARGE_ROCK, SMALL_ROCK)
    rock_albedo = rng.uniform(0.85, 1.3, len(rx))

    albedo = rng.uniform(0.08, 0.16)
    # regolith albedo variation: the texture contrast differs from site to site
    contrast = float(rng.uniform(0.6, 2.0))
    for grid in (coarse, fine):
        grid.data[0, 1] = 1 + (grid.data[0, 1] - 1) * contrast
    noise = bool(ov.get('noise', True))
    sensor = sample_sensor_params(
        rng, psf_sigma_px=float(rng.uniform(0.4, 0.9)) if noise else 0.0, defocus_px=0.0,
        peak_fraction=float(rng.uniform(0.35, 0.95)), dark_e=float(rng.uniform(0.0, 5.0)),
        read_noise_e=float(rng.uniform(2.0, 12.0)), black_level_dn=0.0, n_stars=0,
        n_hot_pixels=0, bits=16, noise=noise)
    # rock surface roughness: random plane waves on the unit sphere of each lobe
    n_waves = 12
    waves_k = rng.normal(size=(n_waves, 3))
    k_len = rng.uniform(2.5, 14.0, n_waves)
    waves_k *= (k_len / np.linalg.norm(waves_k, axis=1))[:, None]
    params = dict(
        regolith_albedo=albedo, albedo_contrast=contrast, relief_rms_m=relief, fine_rms_m=fine_rms, n_craters=n_craters,
        rock_density=rock_density, boulders=boulders,
        ambient=rng.uniform(0.01, 0.035),
        tint=(1.0, rng.uniform(0.95, 0.99), rng.uniform(0.88, 0.95)),
        vignetting=rng.uniform(0.1, 0.35) if noise else 0.0,
        exposure_percentile=rng.uniform(0.99, 0.999),
        gamma=rng.uniform(1.4, 2.2),
        sensor=sensor, waves_k=waves_k, waves_amp=rng.uniform(0.04, 0.1, n_waves) / k_len,
        rock_roughness=rng.uniform(0.6, 1.4),
        noise_seed=int(rng.integers(0, 2 ** 62)),
    )
    law = frame_law(rng, reflectance)
    f32 = dict(dtype=torch.float32, device=device)
    return Scene(
        width=int(width), height=int(height), camera=cam, sun_elevation_deg=sun_el,
        sun_azimuth_deg=sun_az, coarse=coarse, fine=fine,
        rock_center=torch.as_tensor(center, **f32), rock_M=torch.as_tensor(m, **f32),
        rock_R=torch.as_tensor(rot, **f32),
        rock_radius=torch.as_tensor(radius, **f32),
        lobe_rock=torch.as_tensor(owner, dtype=torch.long, device=device),
        rock_class=torch.as_tensor(rock_class, dtype=torch.long, device=device),
        rock_albedo=torch.as_tensor(rock_albedo, **f32), params=params, reflectance=law)


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------
def _camera_frame(cam: Camera):
    yaw, pitch, roll = (math.radians(v) for v in (cam.yaw_deg, cam.pitch_deg, cam.roll_deg))
    f = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    r = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    d = np.cross(f, r)
    r2 = math.cos(roll) * r + math.sin(roll) * d
    d2 = -math.sin(roll) * r + math.cos(roll) * d
    return f, r2, d2


def _rays(scene: Scene, device):
    w, h = scene.width, scene.height
    cam = scene.camera
    fx = (w / 2) / math.tan(math.radians(cam.hfov_deg / 2))
    f, r, d = (torch.tensor(v, dtype=torch.float32, device=device) for v in _camera_frame(cam))
    xs = (torch.arange(w, device=device, dtype=torch.float32) - (w / 2 - 0.5)) / fx
    ys = (torch.arange(h, device=device, dtype=torch.float32) - (h / 2 - 0.5)) / fx
    dirs = f[None, None] + xs[None, :, None] * r[None, None] + ys[:, None, None] * d[None, None]
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    return dirs.reshape(-1, 3), fx, (f, r, d)


def _height(scene: Scene, x, y):
    return scene.coarse.sample(x, y)[0] + scene.fine.sample(x, y)[0]


def _march_terrain(scene: Scene, o, dirs, device, t_start=None, rel=0.02, min_step=0.02):
    """Distance to the first terrain hit along each ray (inf = none): geometric steps growing with
    distance (rel * t, at least min_step), active-set compaction, then bisection refinement.
    t_start: per-ray distance to start marching from (default: skip the empty space above the
    highest terrain near the camera)."""
    n = dirs.shape[0]
    t_hit = torch.full((n,), float('inf'), device=device)
    cov = scene.coarse.cell * (scene.coarse.n - 1) / 2
    horiz = torch.clamp(torch.linalg.norm(dirs[:, :2], dim=1), min=1e-6)
    t_max = torch.clamp(cov * 0.99 / horiz, max=5000.0)
    fine_max = float(scene.fine.data[0, 0].max())
    hmax_all = float(scene.coarse.data[0, 0].max()) + fine_max + 0.01
    dz = dirs[:, 2]
    if t_start is None:
        # the coarse grid within 12 m of the camera bounds the terrain there
        cx = int(round((float(o[0]) - scene.coarse.x0) / scene.coarse.cell))
        cy = int(round((float(o[1]) - scene.coarse.y0) / scene.coarse.cell))
        hnear = float(scene.coarse.data[0, 0, max(0, cy - 12):cy + 13, max(0, cx - 12):cx + 13].max()) \
            + fine_max + 0.02
        t0 = torch.zeros(n, device=device)
        down = dz < -1e-6
        t_skip = torch.clamp((o[2] - hnear) / torch.clamp(-dz, min=1e-6), min=0.0)
        t0 = torch.where(down, torch.minimum(t_skip, 10.0 / horiz), t0)
        t_start = torch.clamp(t0, min=0.05)
    idx = torch.arange(n, device=device)
    t = t_start.clone()
    d = dirs
    tm = t_max
    f0 = o[2] + d[:, 2] * t - _height(scene, o[0] + d[:, 0] * t, o[1] + d[:, 1] * t)
    below = f0 < 0
    if below.any():          # starts under the surface: hit at the start
        t_hit[below] = t[below]
    keep = ~below & (t < tm)
    idx, t, d, tm = idx[keep], t[keep], d[keep], tm[keep]
    lo_list, hi_list, id_list, dlist = [], [], [], []
    while idx.numel():
        t_new = t + torch.clamp(t * rel, min=min_step)
        pz = o[2] + d[:, 2] * t_new
        f = pz - _height(scene, o[0] + d[:, 0] * t_new, o[1] + d[:, 1] * t_new)
        hit = f < 0
        done = hit | (t_new > tm) | ((d[:, 2] > 0) & (pz > hmax_all))
        if hit.any():
            lo_list.append(t[hit]); hi_list.append(t_new[hit]); id_list.append(idx[hit])
            dlist.append(d[hit])
        if done.any():
            keep = ~done
            idx, t, d, tm = idx[keep], t_new[keep], d[keep], tm[keep]
        else:
            t = t_new
    if id_list:
        lo = torch.cat(lo_list); hi = torch.cat(hi_list); ii = torch.cat(id_list); dd = torch.cat(dlist)
        for _ in range(7):
            mid = 0.5 * (lo + hi)
            f = o[2] + dd[:, 2] * mid - _height(scene, o[0] + dd[:, 0] * mid, o[1] + dd[:, 1] * mid)
            above = f > 0
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        t_hit[ii] = 0.5 * (lo + hi)
    return t_hit


def _terrain_depth(scene: Scene, o, dirs, device, step=4):
    """Terrain distance for every pixel: march a sparse grid of rays (every `step` pixels), then
    start each full-resolution ray at 0.85 x the nearest hit among its sparse neighbours."""
    w, h = scene.width, scene.height
    if w < 4 * step or h < 4 * step:
        return _march_terrain(scene, o, dirs, device)
    d3 = dirs.reshape(h, w, 3)
    ys = torch.arange(0, h, step, device=device)
    xs = torch.arange(0, w, step, device=device)
    sparse = d3[ys][:, xs].reshape(-1, 3)
    ts = _march_terrain(scene, o, sparse, device).reshape(1, 1, len(ys), len(xs))
    tmin = -F.max_pool2d(-ts, 3, stride=1, padding=1)
    tmin = F.interpolate(tmin, scale_factor=step, mode='nearest')[0, 0, :h, :w].reshape(-1)
    finite = torch.isfinite(tmin)
    t_hit = torch.full((h * w,), float('inf'), device=device)
    if finite.any():
        sel = torch.nonzero(finite).squeeze(1)
        t_hit[sel] = _march_terrain(scene, o, dirs[sel], device,
                                    t_start=torch.clamp(0.85 * tmin[sel], min=0.05))
    # a ray whose sparse neighbours (+-4..8 px) all miss the terrain is taken as sky
    return t_hit


def _pairs_from_boxes(x0, x1, y0, y1, width):
    """Enumerate (pixel, box) pairs for integer boxes [x0, x1) x [y0, y1)."""
    w = torch.clamp(x1 - x0, min=0)
    h = torch.clamp(y1 - y0, min=0)
    cnt = w * h
    total = int(cnt.sum())
    if total == 0:
        z = torch.zeros(0, dtype=torch.long, device=x0.device)
        return z, z
    box = torch.repeat_interleave(torch.arange(len(cnt), device=x0.device), cnt)
    start = torch.cumsum(cnt, 0) - cnt
    off = torch.arange(total, device=x0.device) - start[box]
    px = x0[box] + off % w[box]
    py = y0[box] + off // w[box]
    return py * width + px, box


def _ellipsoid_t(o, d, c, m):
    """Entry/exit distances of rays (o, d) with ellipsoids (c, m); nan-free, valid mask."""
    oc = o - c
    ol = (m * oc[:, None, :]).sum(-1)
    dl = (m * d[:, None, :]).sum(-1)
    a = (dl * dl).sum(-1)
    b = (ol * dl).sum(-1)
    cc = (ol * ol).sum(-1) - 1
    disc = b * b - a * cc
    sq = torch.sqrt(torch.clamp(disc, min=0))
    return (-b - sq) / a, (-b + sq) / a, disc > 0, ol, dl


def _project(points, o, frame, fx, w, h):
    f, r, d = frame
    rel = points - o
    z = rel @ f
    u = (rel @ r) / z * fx + (w / 2 - 0.5)
    v = (rel @ d) / z * fx + (h / 2 - 0.5)
    return u, v, z


_CHUNK = 1 << 20


def _trace_rocks(scene: Scene, o, dirs, frame, fx, t_limit, device):
    """Nearest rock lobe along each camera ray closer than t_limit. Returns (t, lobe) with
    t = inf / lobe = -1 where no rock is hit."""
    w, h = scene.width, scene.height
    npx = w * h
    t_best = t_limit.clone()
    lobe_best = torch.full((npx,), -1, dtype=torch.long, device=device)
    if scene.rock_center.shape[0] == 0:
        return t_best, lobe_best
    c, rad = scene.rock_center, scene.rock_radius
    u, v, z = _project(c, o, frame, fx, w, h)
    near = z <= rad + 0.05
    ext = fx * rad / torch.clamp(z - rad, min=1e-3) + 1.5
    x0 = torch.floor(u - ext).long(); x1 = torch.ceil(u + ext).long() + 1
    y0 = torch.floor(v - ext).long(); y1 = torch.ceil(v + ext).long() + 1
    # lobes reaching behind the near plane: the whole image (rare); lobes fully behind: none
    behind = z < -rad
    x0 = torch.where(near, torch.zeros_like(x0), x0); x1 = torch.where(near, torch.full_like(x1, w), x1)
    y0 = torch.where(near, torch.zeros_like(y0), y0); y1 = torch.where(near, torch.full_like(y1, h), y1)
    x0 = x0.clamp(0, w); x1 = x1.clamp(0, w); y0 = y0.clamp(0, h); y1 = y1.clamp(0, h)
    x1 = torch.where(behind, x0, x1)
    pix, lobe = _pairs_from_boxes(x0, x1, y0, y1, w)
    for s in range(0, pix.numel(), _CHUNK):
        p, l = pix[s:s + _CHUNK], lobe[s:s + _CHUNK]
        dd = dirs[p]
        t0, _, ok, _, _ = _ellipsoid_t(o[None], dd, c[l], scene.rock_M[l])
        ok = ok & (t0 > 0.01) & (t0 < t_best[p])
        p, l, t0 = p[ok], l[ok], t0[ok]
        if p.numel() == 0:
            continue
        t_best.scatter_reduce_(0, p, t0, reduce='amin')
        win = t0 <= t_best[p]
        lobe_best[p[win]] = l[win]
    t_out = torch.where(lobe_best >= 0, t_best, torch.full_like(t_best, float('inf')))
    return t_out, lobe_best


def _sun_dir(scene: Scene):
    el, az = math.radians(scene.sun_elevation_deg), math.radians(scene.sun_azimuth_deg)
    return np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])


class _ShadowMap:
    """Lowest lit height over a height grid for a directional sun: a point P is lit by the terrain
    when P.z >= M(P.xy). Computed by a sweep along the sun azimuth (reverse running maximum of
    H - s tan(elevation) on a grid rotated to the sun direction)."""

    def __init__(self, hgrid: torch.Tensor, x0, y0, cell, sun, device, exclude=None):
        n = hgrid.shape[-1]
        span = cell * (n - 1)
        self.cx, self.cy = x0 + span / 2, y0 + span / 2
        horiz = math.hypot(sun[0], sun[1])
        self.u = (sun[0] / horiz, sun[1] / horiz)
        self.wv = (-self.u[1], self.u[0])
        self.tan_el = sun[2] / horiz
        nr = int(math.ceil(n * 1.4143)) | 1
        self.cell = cell
        self.half = cell * (nr - 1) / 2
        ax = torch.linspace(-self.half, self.half, nr, device=device)
        s = ax[None, :]          # columns: along the sun direction
        wq = ax[:, None]         # rows: across
        px = self.cx + s * self.u[0] + wq * self.wv[0]
        py = self.cy + s * self.u[1] + wq * self.wv[1]
        grid = _Grid(torch.stack([hgrid, torch.ones_like(hgrid)])[None], x0, y0, cell)
        smp = grid.sample(px.reshape(-1), py.reshape(-1)).reshape(2, nr, nr)
        hr = torch.where(smp[1] > 0.999, smp[0], torch.full_like(smp[0], -1e6))
        if exclude is not None:
            ex = exclude(px.reshape(-1), py.reshape(-1)).reshape(nr, nr)
            hr = torch.where(ex, torch.full_like(hr, -1e6), hr)
        g = hr - s * self.tan_el
        rev = torch.flip(g, dims=[1])
        cm = torch.cummax(rev, dim=1).values
        cm = torch.flip(cm, dims=[1])
        after = torch.cat([cm[:, 1:], torch.full_like(cm[:, :1], -1e6)], dim=1)
        self.m = _Grid((after + s * self.tan_el)[None, None], -self.half, -self.half, cell)

    def lowest_lit(self, x, y):
        dx, dy = x - self.cx, y - self.cy
        s = dx * self.u[0] + dy * self.u[1]
        wq = dx * self.wv[0] + dy * self.wv[1]
        gx, gy = self.m.norm(s, wq)
        g = torch.stack([gx, gy], -1)[None, None]
        out = F.grid_sample(self.m.data, g, mode='bilinear', padding_mode='border',
                            align_corners=True)
        return out[0, 0, 0]


def _rock_shadows(scene: Scene, p, hit_lobe, sun, device, bin_m=0.03):
    """True where the ray from hit point p (M, 3) toward the sun meets a rock lobe other than the
    point's own (or its own lobe further along the ray).

    World-space search: points and lobe shadow strips are binned across the horizontal sun
    direction; within a bin the points are sorted along it, so each lobe only visits the points
    under its shadow footprint. Exact ray-ellipsoid tests follow."""
    m_pts = p.shape[0]
    shadow = torch.zeros(m_pts, dtype=torch.bool, device=device)
    if scene.rock_center.shape[0] == 0 or m_pts == 0:
        return shadow
    sun_t = torch.tensor(sun, dtype=torch.float32, device=device)
    hz = math.hypot(sun[0], sun[1])
    u = (sun[0] / hz, sun[1] / hz)
    c, rad = scene.rock_center, scene.rock_radius
    ground = _height(scene, c[:, 0], c[:, 1])
    # shadow reach: until the sun ray over the lobe top falls 2 radii + 0.1 m under its ground
    length = torch.clamp((c[:, 2] + 3 * rad - ground + 0.1) / max(sun[2], 1e-3), max=80.0)
    reach_h = length * hz + rad            # horizontal extent of the strip behind the centre
    # point coordinates: along (toward the sun) and across
    ps = (p[:, 0] * u[0] + p[:, 1] * u[1]).double()
    pw = -p[:, 0] * u[1] + p[:, 1] * u[0]
    pb = torch.floor(pw / bin_m).long()
    b0 = int(pb.min())
    s0 = float(ps.min())
    key = (pb - b0).double() * 1e7 + (ps - s0)
    key_sorted, order = torch.sort(key)
    cs = (c[:, 0] * u[0] + c[:, 1] * u[1]).double()
    cw = -c[:, 0] * u[1] + c[:, 1] * u[0]
    lb0 = torch.floor((cw - rad) / bin_m).long()
    lb1 = torch.floor((cw + rad) / bin_m).long()
    nb = (lb1 - lb0 + 1).clamp(min=1)
    q_lobe = torch.repeat_interleave(torch.arange(len(c), device=device), nb)
    start = torch.cumsum(nb, 0) - nb
    q_bin = lb0[q_lobe] + torch.arange(int(nb.sum()), device=device) - start[q_lobe]
    base = (q_bin - b0).double() * 1e7 - s0
    lo = torch.searchsorted(key_sorted, base + cs[q_lobe] - reach_h[q_lobe].double())
    hi = torch.searchsorted(key_sorted, base + cs[q_lobe] + rad[q_lobe].double())
    cnt = (hi - lo).clamp(min=0)
    total = int(cnt.sum())
    if total == 0:
        return shadow
    q_start = torch.cumsum(cnt, 0) - cnt
    for s_ in range(0, total, _CHUNK):
        e_ = min(total, s_ + _CHUNK)
        k = torch.arange(s_, e_, device=device)
        q = torch.searchsorted(q_start + cnt, k, right=True)   # query of each pair
        pt = order[lo[q] + (k - q_start[q])]
        lobe = q_lobe[q]
        org = p[pt]
        v = org - c[lobe]
        along = -(v @ sun_t)
        perp2 = (v * v).sum(-1) - along * along
        r_l = rad[lobe]
        inside = (perp2 <= r_l * r_l) & (along >= -r_l) & (along <= length[lobe] + r_l)
        if not inside.any():
            continue
        pt, lobe, org = pt[inside], lobe[inside], org[inside]
        own = hit_lobe[pt] == lobe
        t0, t1, valid, _, _ = _ellipsoid_t(org, sun_t[None].expand_as(org), c[lobe], scene.rock_M[lobe])
        eps = 2e-3
        occ = valid & (t0 > eps) & (~own | (t1 > t0 + eps))
        if occ.any():
            shadow[pt[occ]] = True
    return shadow


def _terrain_normal_albedo(scene: Scene, x, y):
    out = []
    for grid in (scene.coarse, scene.fine):
        e = grid.cell
        hx1 = grid.sample(x + e, y)[0]; hx0 = grid.sample(x - e, y)[0]
        hy1 = grid.sample(x, y + e)[0]; hy0 = grid.sample(x, y - e)[0]
        out.append(((hx1 - hx0) / (2 * e), (hy1 - hy0) / (2 * e)))
    gx = out[0][0] + out[1][0]
    gy = out[0][1] + out[1][1]
    n = torch.stack([-gx, -gy, torch.ones_like(gx)], -1)
    n = n / n.norm(dim=-1, keepdim=True)
    alb = scene.coarse.sample(x, y)[1] * torch.where(
        scene.fine.sample(x, y)[1] > 0, scene.fine.sample(x, y)[1], torch.ones_like(x))
    return n, alb


def _direct_radiance(law: ReflectanceLaw, n, sun_t, view, albedo, lit):
    """Sunlit radiance of the hit points under `law` (0 where not `lit`), with each point's own
    incidence, emission and phase angles. McEwen's law is the renderer's since its first
    session, bit for bit; another law is scaled so that its median over the lit points equals
    McEwen's there, so the ambient term stays a fraction of the typical sunlit radiance."""
    mu0 = torch.clamp((n * sun_t[None]).sum(-1), min=0.0)
    mu = torch.clamp((n * view).sum(-1), min=1e-3)
    alpha = torch.rad2deg(torch.acos(torch.clamp((view * sun_t[None]).sum(-1), -1, 1)))
    big_l = mcewen_weight(alpha)
    ref = albedo * (2 * big_l * mu0 / (mu0 + mu + 1e-6) + (1 - big_l) * mu0) * lit.float()
    if law.family == 'mcewen' or not bool(lit.any()):
        return ref
    rad = albedo * law(mu0, mu, alpha).clamp_min(0.0) * lit.float()
    scale = float(ref[lit].median()) / max(float(rad[lit].median()), 1e-12)
    return rad * scale


def render(scene: Scene, device=None):
    """Render a sampled scene -> (rgb uint8 HxWx3, ground mask HxW uint8, clean mask HxW uint8,
    info dict)."""
    device = scene.coarse.data.device if device is None else torch.device(device)
    w, h = scene.width, scene.height
    cam = scene.camera
    o = torch.tensor([cam.x, cam.y, cam.z], dtype=torch.float32, device=device)
    dirs, fx, frame = _rays(scene, device)
    t_ter = _terrain_depth(scene, o, dirs, device)
    t_rock, lobe = _trace_rocks(scene, o, dirs, frame, fx, t_ter, device)
    is_rock = lobe >= 0
    t = torch.where(is_rock, t_rock, t_ter)
    hit = torch.isfinite(t)
    hit_pix = torch.nonzero(hit).squeeze(1)
    th = t[hit_pix]
    dh = dirs[hit_pix]
    p = o[None] + dh * th[:, None]
    lobe_h = lobe[hit_pix]
    rock_h = lobe_h >= 0

    # normals and albedo
    n_t, alb = _terrain_normal_albedo(scene, p[:, 0], p[:, 1])
    n = n_t
    if rock_h.any():
        li = lobe_h[rock_h]
        m = scene.rock_M[li]
        pl = (m * (p[rock_h] - scene.rock_center[li])[:, None, :]).sum(-1)
        nr = (m.transpose(1, 2) * pl[:, None, :]).sum(-1)
        nr = nr / nr.norm(dim=-1, keepdim=True)
        # roughness: gradient of a sum of plane waves over the lobe's unit-sphere coordinates
        prm = scene.params
        kk = torch.as_tensor(prm['waves_k'], dtype=torch.float32, device=device)
        amp = torch.as_tensor(prm['waves_amp'], dtype=torch.float32, device=device)
        phase = (li.float() * 2.399963)[:, None]
        arg = pl @ kk.T + phase * torch.arange(1, kk.shape[0] + 1, device=device, dtype=torch.float32)[None]
        g_local = (amp[None] * torch.cos(arg)) @ kk
        g = (scene.rock_R[li] * g_local[:, None, :]).sum(-1)
        g = g - (g * nr).sum(-1, keepdim=True) * nr
        nr = nr - prm['rock_roughness'] * g
        nr = nr / nr.norm(dim=-1, keepdim=True)
        rock_tex = 1 + 2.0 * (amp[None] * torch.sin(arg * 1.7)).sum(-1)
        n = n.clone()
        n[rock_h] = nr
        alb = alb.clone()
        alb[rock_h] = alb[rock_h] * scene.rock_albedo[scene.lobe_rock[li]] * rock_tex

    # shadows: terrain horizon sweep (fine grid, coarse grid outside it) + rock occluders
    sun = _sun_dir(scene)
    sun_t = torch.tensor(sun, dtype=torch.float32, device=device)
    fine, coarse = scene.fine, scene.coarse
    fxs, fys = fine.coords()
    fine_total = fine.data[0, 0] + coarse.sample(
        fxs[None, :].expand(fine.n, -1).reshape(-1), fys[:, None].expand(-1, fine.n).reshape(-1)
    )[0].reshape(fine.n, fine.n)
    fx_lo, fx_hi = fine.x0, fine.x0 + fine.cell * (fine.n - 1)
    fy_lo, fy_hi = fine.y0, fine.y0 + fine.cell * (fine.n - 1)

    def in_fine(x, y):
        return (x >= fx_lo) & (x <= fx_hi) & (y >= fy_lo) & (y <= fy_hi)

    sm_fine = _ShadowMap(fine_total, fine.x0, fine.y0, fine.cell, sun, device)
    sm_out = _ShadowMap(coarse.data[0, 0], coarse.x0, coarse.y0, coarse.cell, sun, device,
                        exclude=in_fine)
    sm_all = _ShadowMap(coarse.data[0, 0], coarse.x0, coarse.y0, coarse.cell, sun, device)
    inside = in_fine(p[:, 0], p[:, 1])
    low_in = torch.maximum(sm_fine.lowest_lit(p[:, 0], p[:, 1]), sm_out.lowest_lit(p[:, 0], p[:, 1]))
    low_out = sm_all.lowest_lit(p[:, 0], p[:, 1])
    lowest = torch.where(inside, low_in, low_out)
    bias = 0.005 + 0.002 * th
    lit = (p[:, 2] + bias >= lowest) & ((n * sun_t[None]).sum(-1) > 0)
    # rock occluders only matter where the point is otherwise lit
    cand = torch.nonzero(lit).squeeze(1)
    rock_sh = _rock_shadows(scene, p[cand], lobe_h[cand], sun, device)
    lit[cand] = lit[cand] & ~rock_sh

    prm = scene.params
    view = -dh
    rad = _direct_radiance(scene.reflectance, n, sun_t, view, alb, lit)
    amb = prm['ambient'] * alb * (0.5 + 0.5 * n[:, 2].clamp(min=0))
    radiance = torch.zeros(w * h, device=device)
    radiance[hit_pix] = rad + amb

    # labels
    cls = torch.full((w * h,), SKY, dtype=torch.long, device=device)
    cls[hit_pix] = GROUND
    rock_id = torch.full((w * h,), -1, dtype=torch.long, device=device)
    rock_pix = hit_pix[rock_h]
    rid = scene.lobe_rock[lobe_h[rock_h]]
    rock_id[rock_pix] = rid
    cls[rock_pix] = scene.rock_class[rid]
    n_rocks = scene.rock_class.numel()
    area = torch.bincount(rid, minlength=n_rocks) if n_rocks else torch.zeros(0, device=device)
    min_px = min_rock_pixels(w, h)
    clean = cls.clone()
    if n_rocks:
        small_area = area[rock_id.clamp(min=0)] < min_px
        clean[(rock_id >= 0) & small_area] = GROUND

    # sensor: vignetting, PSF blur, exposure with shot/read noise (shared sensor model, 16-bit
    # linear), then a warm-grey tint and gamma encoding to 8 bit
    img = radiance.reshape(h, w)
    hit_img = hit.reshape(h, w)
    if prm['vignetting'] > 0:
        yy = (torch.arange(h, device=device, dtype=torch.float32) - (h / 2 - 0.5)) / fx
        xx = (torch.arange(w, device=device, dtype=torch.float32) - (w / 2 - 0.5)) / fx
        r2 = (xx[None, :] ** 2 + yy[:, None] ** 2)
        img = img * (1 - prm['vignetting'] * r2 / float(r2.max()))
    sensor = prm['sensor']
    if sensor.psf_sigma_px > 0:
        img = sensor_blur(img.contiguous(), sensor.psf_sigma_px)
    ref = float(torch.quantile(img[hit_img][:200000].float(), prm['exposure_percentile'])) \
        if hit_pix.numel() else 1.0
    dn, _ = expose(img, sensor, np.random.default_rng(prm['noise_seed']), max(ref, 1e-6))
    lin = torch.from_numpy(dn.astype(np.float32) / 65535.0).to(device)
    tint = torch.tensor(prm['tint'], dtype=torch.float32, device=device)[:, None, None]
    rgb = torch.clamp(lin[None] * tint, 0, 1) ** (1 / prm['gamma'])
    rgb8 = (rgb * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    ground_mask = cls.reshape(h, w).to(torch.uint8).cpu().numpy()
    clean_mask = clean.reshape(h, w).to(torch.uint8).cpu().numpy()
    vis_area = area.cpu().numpy() if n_rocks else np.zeros(0)
    rc = scene.rock_class.cpu().numpy()
    info = dict(
        n_rocks_scene=int(n_rocks),
        n_rocks_small=int(((vis_area > 0) & (rc == SMALL_ROCK)).sum()),
        n_rocks_large=int(((vis_area > 0) & (rc == LARGE_ROCK)).sum()),
        n_rocks_small_clean=int(((vis_area >= min_px) & (rc == SMALL_ROCK)).sum()),
        n_rocks_large_clean=int(((vis_area >= min_px) & (rc == LARGE_ROCK)).sum()),
        clean_min_rock_pixels=min_px,
        rock_id=rock_id.reshape(h, w).cpu().numpy(),
        depth=t.reshape(h, w).cpu().numpy(),
        lit=None,
    )
    lit_full = torch.zeros(w * h, dtype=torch.bool, device=device)
    lit_full[hit_pix] = lit
    info['lit'] = lit_full.reshape(h, w).cpu().numpy()
    return rgb8, ground_mask, clean_mask, info


def _meta(scene: Scene, ground_mask, clean_mask, info):
    cam = scene.camera
    tot = ground_mask.size
    fr = np.bincount(ground_mask.reshape(-1), minlength=4) / tot
    frc = np.bincount(clean_mask.reshape(-1), minlength=4) / tot
    prm = scene.params
    rel_az = (scene.sun_azimuth_deg - cam.yaw_deg + 180) % 360 - 180
    return dict(
        width=scene.width, height=scene.height,
        sun_elevation_deg=round(scene.sun_elevation_deg, 3),
        sun_azimuth_deg=round(scene.sun_azimuth_deg, 3),
        sun_azimuth_rel_camera_deg=round(rel_az, 3),
        camera_height_m=round(cam.height, 4), camera_pitch_deg=round(cam.pitch_deg, 3),
        camera_roll_deg=round(cam.roll_deg, 3), camera_yaw_deg=round(cam.yaw_deg, 3),
        hfov_deg=round(cam.hfov_deg, 3), has_sky=int(fr[SKY] > 0),
        n_rocks_scene=info['n_rocks_scene'],
        n_rocks_small=info['n_rocks_small'], n_rocks_large=info['n_rocks_large'],
        n_rocks_small_clean=info['n_rocks_small_clean'],
        n_rocks_large_clean=info['n_rocks_large_clean'],
        frac_ground=round(float(fr[0]), 6), frac_small_rock=round(float(fr[1]), 6),
        frac_large_rock=round(float(fr[2]), 6), frac_sky=round(float(fr[3]), 6),
        clean_frac_small_rock=round(float(frc[1]), 6), clean_frac_large_rock=round(float(frc[2]), 6),
        clean_min_rock_pixels=info['clean_min_rock_pixels'],
        regolith_albedo=round(prm['regolith_albedo'], 4),
        albedo_contrast=round(prm['albedo_contrast'], 3), relief_rms_m=round(prm['relief_rms_m'], 4),
        n_craters=prm['n_craters'], blur_sigma_px=round(prm['sensor'].psf_sigma_px, 3),
        read_noise_e=round(prm['sensor'].read_noise_e, 2) if prm['sensor'].noise else 0.0,
        full_well_e=round(prm['sensor'].full_well_e, 1), peak_fraction=round(prm['sensor'].peak_fraction, 3),
        gamma=round(prm['gamma'], 3),
        vignetting=round(prm['vignetting'], 3),
        reflectance=scene.reflectance.describe(),
    )


class _single_thread:
    """Run CPU rendering with one intra-op thread: results then do not depend on the machine's
    thread count (bit-identical output for a seed) and parallelism comes from worker processes."""

    def __init__(self, device):
        self.active = torch.device(device).type == 'cpu'

    def __enter__(self):
        if self.active:
            self.prev = torch.get_num_threads()
            torch.set_num_threads(1)

    def __exit__(self, *exc):
        if self.active:
            torch.set_num_threads(self.prev)


def render_scene(seed_or_rng, width=720, height=480, device='auto', overrides=None,
                 reflectance='lunar-lambert'):
    """Render one random scene.

    seed_or_rng: int seed or numpy Generator. Returns (rgb uint8 HxWx3, ground mask class ids
    uint8 HxW, clean mask class ids uint8 HxW, meta dict). meta also carries the per-pixel
    'rock_id' (-1 = no rock), 'depth' (m along the ray, inf = sky) and 'lit' arrays.
    overrides: see `sample_scene` (test hooks: flat terrain, given rocks, camera, sun, no noise).
    reflectance: 'lunar-lambert' (default) or 'varied' (see `sample_scene`)."""
    dev = resolve_device(device)
    rng = seed_or_rng if isinstance(seed_or_rng, np.random.Generator) else np.random.default_rng(seed_or_rng)
    with torch.no_grad(), _single_thread(dev):
        scene = sample_scene(rng, width, height, dev, overrides, reflectance)
        rgb, gmask, cmask, info = render(scene, dev)
    meta = _meta(scene, gmask, cmask, info)
    meta.update(rock_id=info['rock_id'], depth=info['depth'], lit=info['lit'])
    return rgb, gmask, cmask, meta


def colorize(mask: np.ndarray) -> np.ndarray:
    """Class ids (HxW) -> palette RGB (HxWx3 uint8)."""
    return PALETTE[np.asarray(mask, dtype=np.intp)]


def image_name(index: int) -> str:
    return f'render{index + 1:04d}.png'


def _write_png(path: Path, rgb: np.ndarray):
    import cv2
    tmp = path.with_name(path.name + '.tmp.png')
    if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3]):
        raise OSError(f'could not write {path}')
    os.replace(tmp, path)


def _render_one(args):
    """Render and write image `i` of data set `seed`; returns its meta.csv row."""
    out, seed, i, width, height, device, reflectance = args
    rgb, gmask, cmask, meta = render_scene(image_rng(seed, i), width, height, device,
                                           reflectance=reflectance)
    num = f'{i + 1:04d}'
    img = Path(out) / 'images'
    _write_png(img / 'render' / f'render{num}.png', rgb)
    _write_png(img / 'ground' / f'ground{num}.png', colorize(gmask))
    _write_png(img / 'clean' / f'clean{num}.png', colorize(cmask))
    row = {'image_name': f'render{num}.png', 'seed': seed, 'index': i}
    row.update({k: v for k, v in meta.items() if k in META_FIELDS})
    return row


def render_dataset(out_dir, n, seed, width=720, height=480, device='auto', start_index=0,
                   progress=True, workers='auto', reflectance='lunar-lambert'):
    """Render images start_index .. start_index + n - 1 of data set `seed` into out_dir (Kaggle
    layout, see module doc). Returns {'n', 'out', 'meta', 'seconds', 'images_per_s', 'device',
    'workers'}.

    Rows of an existing meta.csv for other indices are kept, so a set can be rendered in chunks.
    meta.csv is (re)written only when all n images are done (temporary file + rename); PNGs are
    written under a temporary name and renamed, so no half-written PNG carries a final name.
    workers: processes rendering in parallel; 'auto' = one per CPU core (at most 8) on CPU, 1 on
    CUDA. Output bytes do not depend on `workers`. reflectance: 'lunar-lambert' (default) or
    'varied' (see `sample_scene`)."""
    from tqdm import tqdm
    out = Path(out_dir)
    for k in ('render', 'ground', 'clean'):
        (out / 'images' / k).mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    if workers == 'auto':
        workers = 1 if dev.type == 'cuda' else max(1, min(8, os.cpu_count() or 1))
    workers = max(1, min(int(workers), n)) if n > 0 else 1
    jobs = [(str(out), int(seed), i, int(width), int(height), str(dev), reflectance)
            for i in range(start_index, start_index + n)]
    import time
    t_start = time.time()
    bar = tqdm(total=n, desc=f'lunar render {width}x{height} ({dev.type})', unit='img',
               disable=not progress)
    rows = []
    try:
        if workers == 1:
            for job in jobs:
                rows.append(_render_one(job))
                bar.update(1)
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(workers, mp_context=mp.get_context('spawn')) as pool:
                for row in pool.map(_render_one, jobs, chunksize=1):
                    rows.append(row)
                    bar.update(1)
    finally:
        bar.close()
    meta_path = out / 'meta.csv'
    names = {r['image_name'] for r in rows}
    with DirLock(out):     # other processes may be merging their chunks into the same meta.csv
        old = [r for r in read_rows(meta_path) if r.get('image_name') not in names]
        allrows = old + rows
        allrows.sort(key=lambda r: int(r['index'])
                     if str(r.get('index', '')).lstrip('-').isdigit() else 0)
        write_csv_atomic(meta_path, META_FIELDS, allrows)
    seconds = time.time() - t_start
    return {'n': n, 'out': str(out), 'meta': str(meta_path), 'seconds': round(seconds, 2),
            'images_per_s': round(n / max(seconds, 1e-9), 3), 'device': dev.type, 'workers': workers}
