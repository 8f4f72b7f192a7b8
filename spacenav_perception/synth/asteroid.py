"""Synthetic navigation-camera images of the binary asteroid Didymos (primary) and Dimorphos.

Scene
    * Primary: a new random star-shaped "spinning top" per frame. Its radius r(lat, lon) is held
      on a lat/lon node grid and is bilinear in (lat, lon) between nodes -- this interpolated
      function *is* the body (the ray caster and the centre-of-mass integral use the same one).
      Base profile: blend of an oblate ellipsoid and a double cone with its rim at the equator
      (equatorial ridge; the cone's weight fades as cos^2(lat) so the poles stay round), equatorial diameter 0.75-0.95 km, polar/equatorial 0.75-0.9; then
      low-order shape perturbations, craters (power-law sizes, bowl + raised rim), boulders and
      fine roughness; an albedo map with broad and fine variation.
    * Moonlet: triaxial ~177 x 174 x 116 m with its own small irregularity, craters and boulders,
      long axis pointing at the primary, orbiting 1.19 km (+-2 %) from the primary's centre of
      mass in the primary's equatorial plane at a random orbital phase. It can occlude the
      primary and the two bodies shadow each other.
    * Camera: pinhole, 5.5 deg full field of view over `size` pixels,
      focal = (size / 2) / tan(2.75 deg), principal point at the image centre ((size - 1) / 2 in
      the project's pixel convention). Range 10-40 km (uniform) to the primary's centre of mass,
      random viewing direction and roll. The attitude is chosen so that the centre of mass lands
      on a chosen pixel: uniform over the frame area where the primary's bounding sphere fits, or
      (probability 0.13) close to an edge so that the body is cut by the frame.
    * Illumination: phase angle uniform in [0, 120] deg; McEwen lunar-Lambert reflectance with a
      phase-dependent limb-darkening weight L(alpha) (option reflectance='varied': a lunar-Lambert,
      Minnaert or Hapke law with random parameters per frame, see reflectance.py); hard
      self-shadows and mutual shadows by a second ray march toward the sun; the night side is
      black.
    * Sensor: see `sensor.py` (PSF, shot/read noise, black level, quantisation, stars, hot pixels).

Label
    The projection of the primary's CENTRE OF MASS (uniform density) in the project's pixel
    convention (centre of the top-left pixel = (0, 0), x right, y down), full-resolution pixels of
    the requested size. The centre of mass is the exact volume centroid of the interpolated radial
    function: V = int r^3/3 dOmega, M = int r^4/4 u dOmega, computed per grid cell with 3x3
    Gauss-Legendre quadrature (r^4 of a bilinear r is a polynomial the rule integrates exactly in
    r; the remaining cos/sin factors vary by < 1 degree per cell). Only frames whose centre of mass
    projects inside the image extent are produced, so every label is a meaningful in-image point;
    the body itself may be partly outside the frame (`cut_by_edge`, `in_frame_fraction`).

Rendering
    Ray casting in torch on `device` ('auto': CUDA when available), float32 for the march,
    float64 where ranges of 10-40 km would lose precision. Only pixels inside each body's
    bounding cone cast rays; the march brackets the first sign change of |p| - r(u(p)) between the
    body's outer and inner bounding spheres and refines it by bisection; normals come from the
    surface gradient of r; shadows are a second march from the hit point toward the sun.

Reproducibility
    Frame i of a dataset uses numpy Generator(SeedSequence([seed, i])) for every random draw
    (scene, shape, sensor noise), so a frame does not depend on `start_index`, the number of
    frames or the device; the output bytes are identical run to run on the same device (GPU and
    CPU agree up to float rounding of the geometry).

Dataset layout written by `render_dataset` (the thesis layout, see DEVELOPERS.md)
    DIR/images/asteroid_NNNNNN.png    8-bit grayscale, size x size
    DIR/meta.csv                      one row per image, META_FIELDS
    DIR/labels.csv                    image_name,x_coordinate,y_coordinate
    DIR/silhouettes/asteroid_NNNNNN.png  (unless silhouettes=False) 8-bit mask, 255 where a camera
                                      ray meets the primary (its whole outline, the night side and
                                      the parts behind the moonlet included), 0 elsewhere: a
                                      training target for networks that learn the body's shape
    Images are written atomically as they finish (temp file + rename). meta.csv and then
    labels.csv are written only at the end, each via a temp file + rename, so an interrupted run
    never leaves a labels.csv that lists images it did not finish (labels.csv is the completion
    marker). Re-rendering into an existing dataset first removes the rows of the indices about to
    be rendered and keeps the others (so chunks rendered with --start-index merge into one set).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spacenav_perception.synth import sensor as sensor_model
from spacenav_perception.synth.reflectance import ReflectanceLaw, frame_law
from spacenav_perception.synth.dataset_files import DirLock, read_rows, write_csv_atomic

FOV_DEG = 5.5
ORBIT_RADIUS_M = 1190.0
MOONLET_SEMI_AXES_M = (88.5, 87.0, 58.0)
PHASE_MAX_DEG = 120.0
RANGE_KM = (10.0, 40.0)
CUT_PROBABILITY = 0.13
IMAGE_PREFIX = 'asteroid_'
LABEL_FIELDS = ('image_name', 'x_coordinate', 'y_coordinate')
META_FIELDS = (
    'image_name', 'seed', 'index', 'size', 'x_coordinate', 'y_coordinate',
    'phase_deg', 'range_km', 'apparent_diameter_px', 'primary_diameter_m', 'primary_polar_ratio',
    'com_offset_m', 'sun_cam_x', 'sun_cam_y', 'sun_cam_z', 'sun_image_angle_deg',
    'in_frame_fraction', 'cut_by_edge', 'primary_px', 'lit_px',
    'silhouette_x', 'silhouette_y', 'com_minus_silhouette_x_px', 'com_minus_silhouette_y_px',
    'moonlet_visible', 'moonlet_px', 'moonlet_occludes', 'moonlet_shadow_on_primary_px',
    'primary_shadow_on_moonlet_px',
    'psf_sigma_px', 'defocus_px', 'full_well_e', 'peak_fraction', 'dark_e', 'read_noise_e',
    'black_level_dn', 'gain_e_per_unit', 'saturated_px', 'n_stars', 'n_hot_pixels',
    'reflectance',
)


def focal_px(size: int) -> float:
    return (size / 2.0) / math.tan(math.radians(FOV_DEG / 2.0))


def resolve_device(device='auto') -> torch.device:
    if device in (None, 'auto'):
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    return torch.device(device)


# ----------------------------------------------------------------------------------------------
# Radial shapes
# ----------------------------------------------------------------------------------------------

def _grid_directions(n_lat: int, n_lon: int):
    lat = np.linspace(-np.pi / 2, np.pi / 2, n_lat)
    lon = np.arange(n_lon) * (2 * np.pi / n_lon)
    cl, sl = np.cos(lat)[:, None], np.sin(lat)[:, None]
    u = np.stack(np.broadcast_arrays(cl * np.cos(lon)[None], cl * np.sin(lon)[None], sl), -1)
    return lat, lon, u


_GAUSS3 = ((0.5 - math.sqrt(0.15), 5 / 18), (0.5, 8 / 18), (0.5 + math.sqrt(0.15), 5 / 18))


class RadialShape:
    """Star-shaped body: `radius` (metres) on nodes lat_i = -90..90 deg (inclusive, n_lat rows),
    lon_j = 360 j / n_lon deg; the surface is bilinear in (lat, lon) between the nodes."""

    def __init__(self, radius: np.ndarray, albedo: np.ndarray | None = None, axes=None):
        self.radius = np.ascontiguousarray(radius, dtype=np.float64)
        # reference ellipsoid semi-axes (body x, y, z): only used to bracket rays tightly
        self.axes = tuple(axes) if axes is not None else (float(self.radius.mean()),) * 3
        self.albedo = (np.ones_like(self.radius) if albedo is None
                       else np.ascontiguousarray(albedo, dtype=np.float64))
        self.n_lat, self.n_lon = self.radius.shape
        self._com = None

    # reference (numpy) evaluation of the interpolated radius, the same formula as the renderer
    def radius_at(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, np.float64)
        lat = np.arcsin(np.clip(u[..., 2], -1, 1))
        lon = np.arctan2(u[..., 1], u[..., 0])
        fi = (lat + np.pi / 2) * ((self.n_lat - 1) / np.pi)
        i0 = np.clip(np.floor(fi), 0, self.n_lat - 2)
        a = fi - i0
        fj = np.mod(lon * (self.n_lon / (2 * np.pi)), self.n_lon)
        j0f = np.floor(fj)
        b = fj - j0f
        i0 = i0.astype(np.int64)
        j0 = j0f.astype(np.int64) % self.n_lon
        j1 = (j0 + 1) % self.n_lon
        r = self.radius
        return ((1 - a) * (1 - b) * r[i0, j0] + (1 - a) * b * r[i0, j1]
                + a * (1 - b) * r[i0 + 1, j0] + a * b * r[i0 + 1, j1])

    def contains(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, np.float64)
        rho = np.linalg.norm(p, axis=-1)
        u = p / np.maximum(rho, 1e-12)[..., None]
        return rho < self.radius_at(u)

    def volume_and_centroid(self):
        """Exact (to quadrature precision) volume (m^3) and centre of mass (m, body frame)."""
        if self._com is None:
            r = self.radius
            dlat = np.pi / (self.n_lat - 1)
            dlon = 2 * np.pi / self.n_lon
            lat0 = -np.pi / 2 + dlat * np.arange(self.n_lat - 1)
            lon0 = dlon * np.arange(self.n_lon)
            r00, r01 = r[:-1], np.roll(r[:-1], -1, axis=1)
            r10, r11 = r[1:], np.roll(r[1:], -1, axis=1)
            vol = 0.0
            mom = np.zeros(3)
            for ga, wa in _GAUSS3:
                lat = lat0 + ga * dlat
                cl, sl = np.cos(lat)[:, None], np.sin(lat)[:, None]
                for gb, wb in _GAUSS3:
                    lon = (lon0 + gb * dlon)[None]
                    rr = ((1 - ga) * (1 - gb) * r00 + (1 - ga) * gb * r01
                          + ga * (1 - gb) * r10 + ga * gb * r11)
                    w = wa * wb * dlat * dlon * cl          # dOmega = cos(lat) dlat dlon
                    r3 = rr ** 3 * w
                    vol += r3.sum() / 3.0
                    r4 = rr * r3 / 4.0
                    mom += np.array([(r4 * cl * np.cos(lon)).sum(),
                                     (r4 * cl * np.sin(lon)).sum(),
                                     (r4 * sl).sum()])
            self._com = (float(vol), mom / vol)
        return self._com

    @property
    def centroid(self) -> np.ndarray:
        return self.volume_and_centroid()[1]

    def surface_gradient(self) -> np.ndarray:
        """(n_lat, n_lon, 3) Cartesian surface gradient of r (central differences)."""
        r = self.radius
        lat, lon, _ = _grid_directions(self.n_lat, self.n_lon)
        dlat = np.pi / (self.n_lat - 1)
        dlon = 2 * np.pi / self.n_lon
        r_lat = np.gradient(r, dlat, axis=0)
        r_lon = (np.roll(r, -1, axis=1) - np.roll(r, 1, axis=1)) / (2 * dlon)
        cl = np.cos(lat)[:, None]
        sl = np.sin(lat)[:, None]
        co, so = np.cos(lon)[None], np.sin(lon)[None]
        e_lat = np.stack(np.broadcast_arrays(-sl * co, -sl * so, cl), -1)
        e_lon = np.stack(np.broadcast_arrays(-so, co, 0 * cl), -1)
        with np.errstate(divide='ignore', invalid='ignore'):
            inv_cl = np.where(cl > 1e-9, 1.0 / cl, 0.0)
        g = r_lat[..., None] * e_lat + (r_lon * inv_cl)[..., None] * e_lon
        g[0] = g[1].mean(axis=0)        # the pole: mean of the neighbouring ring (Cartesian)
        g[-1] = g[-2].mean(axis=0)
        return g


def _smooth_noise(rng, n_lat, n_lon, coarse=(9, 16)):
    """Smooth random field on the node grid (bilinear upsampling of a coarse periodic grid)."""
    cl, co = coarse
    base = rng.standard_normal((cl, co))
    fi = np.linspace(0, cl - 1, n_lat)
    fj = np.arange(n_lon) * (co / n_lon)
    i0 = np.clip(np.floor(fi).astype(int), 0, cl - 2)
    a = (fi - i0)[:, None]
    j0 = np.floor(fj).astype(int) % co
    b = (fj - np.floor(fj))[None]
    j1 = (j0 + 1) % co
    out = ((1 - a) * (1 - b) * base[i0][:, j0] + (1 - a) * b * base[i0][:, j1]
           + a * (1 - b) * base[i0 + 1][:, j0] + a * b * base[i0 + 1][:, j1])
    out[0] = out[0].mean()
    out[-1] = out[-1].mean()
    return out


def _box3(x):
    """3x3 box smoothing on the node grid (periodic in longitude)."""
    x = (np.roll(x, 1, 1) + x + np.roll(x, -1, 1)) / 3
    y = x.copy()
    y[1:-1] = (x[:-2] + x[1:-1] + x[2:]) / 3
    y[0] = y[0].mean()
    y[-1] = y[-1].mean()
    return y


def _random_unit(rng, n=None):
    v = rng.standard_normal((3,) if n is None else (n, 3))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _add_features(r, lat, u, centres, ang_radius, heights, profile, reach):
    """Add localised relief: r += heights[k] * profile(angle / ang_radius[k]) near centres[k]."""
    dlat = lat[1] - lat[0]
    for c, ang, h in zip(centres, ang_radius, heights):
        latc = math.asin(max(-1.0, min(1.0, c[2])))
        half = ang * reach
        i0 = max(0, int(math.floor((latc - half - lat[0]) / dlat)))
        i1 = min(len(lat), int(math.ceil((latc + half - lat[0]) / dlat)) + 1)
        sub = u[i0:i1]
        cosd = sub @ c
        near = cosd > math.cos(min(half, math.pi))
        if not near.any():
            continue
        s = np.arccos(np.clip(cosd[near], -1, 1)) / ang
        r[i0:i1][near] += h * profile(s)


def _crater_profile(s):
    # bowl below the rim inside (s < 1), rim ejecta decaying outside; heights scale by depth
    rim = 0.25
    return np.where(s < 1, (s * s - 1) + rim, rim * np.exp(-4.0 * (s - 1)))


def _boulder_profile(s):
    return np.sqrt(np.clip(1 - s * s, 0, None))


def _power_law(rng, n, lo, hi, slope=2.0):
    """Sizes with cumulative N(>x) ~ x^-slope, truncated to [lo, hi]."""
    x = lo * (1 - rng.random(n)) ** (-1.0 / slope)
    return np.minimum(x, hi)


def _relief(rng, r, lat, u, scale, n_craters, crater_range, n_boulders, boulder_range,
            roughness):
    if n_craters:
        cr = _power_law(rng, n_craters, *crater_range)
        depth = rng.uniform(0.1, 0.2, n_craters) * 2 * cr
        _add_features(r, lat, u, _random_unit(rng, n_craters), cr / scale, depth,
                      _crater_profile, 2.0)
    if n_boulders:
        br = _power_law(rng, n_boulders, *boulder_range, slope=2.5)
        hgt = rng.uniform(0.4, 0.8, n_boulders) * br
        _add_features(r, lat, u, _random_unit(rng, n_boulders), br / scale, hgt,
                      _boulder_profile, 1.0)
    if roughness:
        r += roughness * _box3(rng.standard_normal(r.shape))


def _albedo_map(rng, shape, perturb):
    if not perturb:
        return np.ones(shape)
    n_lat, n_lon = shape
    alb = (1.0 + 0.08 * _smooth_noise(rng, n_lat, n_lon)
           + 0.04 * _smooth_noise(rng, n_lat, n_lon, (33, 64))
           + 0.03 * _box3(rng.standard_normal(shape)))
    return np.clip(alb, 0.6, 1.4)


def build_primary(rng, n_lat=257, n_lon=512, perturb=True, diameter_m=None, polar_ratio=None,
                  ridge_weight=None):
    """Random spinning-top primary. Returns (RadialShape, info dict)."""
    d = float(diameter_m if diameter_m is not None else rng.uniform(750.0, 950.0))
    q = float(polar_ratio if polar_ratio is not None else rng.uniform(0.75, 0.9))
    w = float(ridge_weight if ridge_weight is not None else rng.uniform(0.4, 0.8))
    a, c = d / 2, d / 2 * q
    lat, lon, u = _grid_directions(n_lat, n_lon)
    cl = np.abs(np.cos(lat))[:, None]
    sl = np.abs(np.sin(lat))[:, None]
    r_ell = 1.0 / np.sqrt((cl / a) ** 2 + (sl / c) ** 2)
    r_cone = 1.0 / (cl / a + sl / c)
    # the cone's weight fades toward the poles (cos^2 lat): sharp equatorial ridge, round poles
    wl = w * cl ** 2
    r = np.broadcast_to((1 - wl) * r_ell + wl * r_cone, (n_lat, n_lon)).copy()
    if perturb:
        # equatorial ellipticity and a few broad bumps/dents: low-order shape perturbations
        e = rng.uniform(0.0, 0.05)
        phi = rng.uniform(0, 2 * np.pi)
        r *= 1 + e * np.cos(2 * (lon[None] - phi)) * cl ** 2
        k = int(rng.integers(4, 9))
        dirs = _random_unit(rng, k)
        widths = rng.uniform(0.4, 1.0, k)
        amps = rng.uniform(-0.06, 0.06, k)
        bump = np.zeros_like(r)
        for v, wd, am in zip(dirs, widths, amps):
            bump += am * np.exp((u @ v - 1) / wd ** 2)
        r *= 1 + bump
        _relief(rng, r, lat, u, a, int(rng.integers(40, 100)), (6.0, 90.0),
                int(rng.integers(80, 250)), (3.0, 14.0), 0.15)
    alb = _albedo_map(rng, r.shape, perturb)
    return RadialShape(r, alb, (a, a, c)), {'diameter_m': d, 'polar_ratio': q, 'ridge_weight': w}


def build_moonlet(rng, n_lat=97, n_lon=192, perturb=True):
    """Dimorphos-like triaxial moonlet (semi-axes ~88.5, 87, 58 m) with small irregularity."""
    ax = np.array(MOONLET_SEMI_AXES_M) * (rng.uniform(0.95, 1.05, 3) if perturb else 1.0)
    lat, lon, u = _grid_directions(n_lat, n_lon)
    r = 1.0 / np.sqrt(((u / ax) ** 2).sum(-1))
    if perturb:
        k = int(rng.integers(3, 7))
        bump = np.zeros_like(r)
        for v, wd, am in zip(_random_unit(rng, k), rng.uniform(0.4, 1.0, k),
                             rng.uniform(-0.05, 0.05, k)):
            bump += am * np.exp((u @ v - 1) / wd ** 2)
        r *= 1 + bump
        _relief(rng, r, lat, u, ax.mean(), int(rng.integers(8, 25)), (3.0, 20.0),
                int(rng.integers(20, 60)), (1.5, 5.0), 0.05)
    return RadialShape(r, _albedo_map(rng, r.shape, perturb), tuple(ax))


def _random_rotation(rng) -> np.ndarray:
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _rot_z(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _perp_basis(w, rng=None, angle=None):
    """Unit vectors e1, e2 with (e1, e2, w) right-handed; e1 rotated by a random/given angle."""
    helper = np.array([1.0, 0, 0]) if abs(w[0]) < 0.9 else np.array([0, 1.0, 0])
    a = np.cross(w, helper)
    a /= np.linalg.norm(a)
    b = np.cross(w, a)
    t = angle if angle is not None else rng.uniform(0, 2 * np.pi)
    e1 = math.cos(t) * a + math.sin(t) * b
    return e1, np.cross(w, e1)


# ----------------------------------------------------------------------------------------------
# Scene
# ----------------------------------------------------------------------------------------------

@dataclass
class Body:
    shape: RadialShape
    R: np.ndarray          # body -> world rotation
    X: np.ndarray          # world position of the shape origin (m)


@dataclass
class Scene:
    size: int
    focal: float
    primary: Body
    moonlet: Body | None
    cam_R: np.ndarray      # world -> camera rotation (camera: x right, y down, z forward)
    cam_C: np.ndarray      # camera position (world, m)
    sun: np.ndarray        # unit vector toward the sun (world)
    phase_deg: float
    range_m: float
    com_world: np.ndarray
    sensor: sensor_model.SensorParams
    reflectance: ReflectanceLaw = field(default_factory=ReflectanceLaw)
    info: dict = field(default_factory=dict)

    @property
    def centre(self) -> float:
        return (self.size - 1) / 2.0

    def project(self, X) -> tuple[float, float]:
        pc = self.cam_R @ (np.asarray(X, np.float64) - self.cam_C)
        return (self.centre + self.focal * pc[0] / pc[2],
                self.centre + self.focal * pc[1] / pc[2])


SCENE_OPTIONS = ('perturb', 'moonlet', 'phase_deg', 'range_km', 'com_px', 'cut', 'diameter_m',
                 'polar_ratio', 'primary_rotation', 'view_dir', 'sensor', 'moonlet_phase_deg',
                 'reflectance')


def sample_scene(rng: np.random.Generator, size: int = 1024, **options) -> Scene:
    """Draw one random scene. `options` fix parts of it (test hooks / studies):
    perturb (bool: False = smooth symmetric spinning top, uniform albedo), moonlet (bool),
    phase_deg, range_km, com_px ((x, y) pixel of the centre of mass), cut (bool),
    diameter_m, polar_ratio, primary_rotation (3x3), view_dir (unit, body -> camera, world),
    moonlet_phase_deg, sensor (dict of SensorParams overrides, e.g. {'noise': False}),
    reflectance ('lunar-lambert' (default) or 'varied', see reflectance.py, or a ReflectanceLaw)."""
    unknown = set(options) - set(SCENE_OPTIONS)
    if unknown:
        raise TypeError(f'unknown scene options: {sorted(unknown)}')
    perturb = options.get('perturb', True)
    f = focal_px(size)
    shape, pinfo = build_primary(rng, perturb=perturb, diameter_m=options.get('diameter_m'),
                                 polar_ratio=options.get('polar_ratio'))
    R_p = options.get('primary_rotation')
    R_p = _random_rotation(rng) if R_p is None else np.asarray(R_p, np.float64)
    com_body = shape.centroid
    primary = Body(shape, R_p, -R_p @ com_body)       # world origin = primary centre of mass
    com_world = np.zeros(3)

    moonlet = None
    if options.get('moonlet', True):
        m_shape = build_moonlet(rng, perturb=perturb)
        psi = rng.uniform(0, 2 * np.pi)
        if options.get('moonlet_phase_deg') is not None:
            psi = math.radians(options['moonlet_phase_deg'])
        dist = ORBIT_RADIUS_M * rng.uniform(0.98, 1.02)
        libration = _rot_z(rng.normal(0, 0.05))
        R_m = R_p @ _rot_z(psi) @ libration
        m_com = R_p @ np.array([dist * math.cos(psi), dist * math.sin(psi), 0.0])
        moonlet = Body(m_shape, R_m, m_com - R_m @ m_shape.centroid)

    view = options.get('view_dir')
    view = _random_unit(rng) if view is None else np.asarray(view, np.float64) / np.linalg.norm(view)
    rng_km = options.get('range_km')
    D = 1000.0 * float(rng_km if rng_km is not None else rng.uniform(*RANGE_KM))
    cam_C = com_world + D * view
    phase = options.get('phase_deg')
    phase = float(phase if phase is not None else rng.uniform(0.0, PHASE_MAX_DEG))
    e1, _ = _perp_basis(view, rng)
    sun = math.cos(math.radians(phase)) * view + math.sin(math.radians(phase)) * e1

    # where the centre of mass lands in the frame
    bound = float(np.max(shape.radius)) + float(np.linalg.norm(com_body))
    r_px = f * math.tan(math.asin(min(0.999, bound / D))) + 2.0
    r_min_px = f * float(np.min(shape.radius)) / D
    cut = options.get('cut')
    cut = bool(rng.random() < CUT_PROBABILITY) if cut is None else bool(cut)
    com_px = options.get('com_px')
    if com_px is None:
        hi = size - 1.0
        if cut:
            along = rng.uniform(0.0, hi)
            depth = rng.uniform(0.05, 0.9) * min(r_min_px, size / 2.0)
            side = int(rng.integers(0, 4))
            pos = {0: (depth, along), 1: (hi - depth, along),
                   2: (along, depth), 3: (along, hi - depth)}[side]
        else:
            lo_, hi_ = r_px, hi - r_px
            if lo_ < hi_:
                pos = (rng.uniform(lo_, hi_), rng.uniform(lo_, hi_))
            else:
                slack = min(hi / 2, 0.25 * r_px)
                pos = (hi / 2 + rng.uniform(-slack, slack), hi / 2 + rng.uniform(-slack, slack))
        com_px = (float(np.clip(pos[0], 0.0, hi)), float(np.clip(pos[1], 0.0, hi)))

    # camera attitude: the line of sight to the centre of mass goes through com_px, random roll
    w_world = -view
    d_cam = np.array([(com_px[0] - (size - 1) / 2) / f, (com_px[1] - (size - 1) / 2) / f, 1.0])
    d_cam /= np.linalg.norm(d_cam)
    a1, a2 = _perp_basis(w_world, rng)
    c1, c2 = _perp_basis(d_cam, angle=0.0)
    cam_R = np.stack([c1, c2, d_cam], 1) @ np.stack([a1, a2, w_world], 0)

    sensor = sensor_model.sample_sensor_params(rng, **(options.get('sensor') or {}))
    law = options.get('reflectance') or 'lunar-lambert'
    if not isinstance(law, ReflectanceLaw):
        law = frame_law(rng, law)
    info = {'primary_diameter_m': pinfo['diameter_m'], 'primary_polar_ratio': pinfo['polar_ratio'],
            'com_offset_m': float(np.linalg.norm(com_body)), 'planned_cut': cut,
            'primary_r_eq_m': pinfo['diameter_m'] / 2}
    return Scene(size, f, primary, moonlet, cam_R, cam_C, sun, phase, D, com_world, sensor, law,
                 info)


# ----------------------------------------------------------------------------------------------
# Ray casting
# ----------------------------------------------------------------------------------------------

_DIR_CACHE: dict = {}


def _pixel_dirs(size, focal, device):
    key = (size, focal, str(device))
    if key not in _DIR_CACHE:
        _DIR_CACHE.clear()
        c = (size - 1) / 2.0
        ax = (torch.arange(size, dtype=torch.float64, device=device) - c) / focal
        yy, xx = torch.meshgrid(ax, ax, indexing='ij')
        d = torch.stack([xx, yy, torch.ones_like(xx)], -1).reshape(-1, 3)
        _DIR_CACHE[key] = (d / d.norm(dim=1, keepdim=True)).float()
    return _DIR_CACHE[key]


class _DeviceBody:
    """A RadialShape on the render device with march/shadow queries in its body frame.

    Lookups use corner tables: entry k = i * (n_lon + 1) + j' holds the bilinear coefficients of
    the cell whose lower-left node is (lat row i, lon column j'), with columns re-based to start
    at lon = -180 deg so the atan2 output indexes them without a modulo.
    Rays are bracketed between an inner and an outer scaled copy of the body's reference
    ellipsoid (k_in * E inside the body, body inside k_out * E)."""
    CAM_STEPS_PER_RADIUS = 32     # camera-ray coarse step = r_max / 32
    SHADOW_STEPS_PER_RADIUS = 24
    CHUNK = 4
    BISECT = 5
    SHADOW_START = 1e-3      # first self-shadow sample, in units of r_max (~0.4 m)
    SHADOW_GROWTH = 1.35     # geometric growth of the self-shadow sample spacing

    def __init__(self, body: Body, device):
        s = body.shape
        self.n_lat, self.n_lon = s.n_lat, s.n_lon
        self.device = device
        f32 = dict(dtype=torch.float32, device=device)
        half = s.n_lon // 2
        cols = (np.arange(s.n_lon + 1) + half) % s.n_lon                # re-based at -180 deg

        def corner_table(values):        # values (n_lat, n_lon, C) -> (n_lat-1)*(n_lon+1), 4, C
            v = values[:, cols]
            v00, v01 = v[:-1, :-1], v[:-1, 1:]
            v10, v11 = v[1:, :-1], v[1:, 1:]
            t = np.stack([v00, v10 - v00, v01 - v00, v11 - v10 - v01 + v00], 2)
            # pad to (n_lat - 1, n_lon + 1) so k = i * (n_lon + 1) + j addresses it directly
            pad = np.zeros((t.shape[0], 1) + t.shape[2:])
            return np.concatenate([t, pad], 1).reshape(-1, 4, values.shape[2])

        self.t_r = torch.as_tensor(corner_table(s.radius[..., None])[..., 0], **f32)
        self.t_ga = torch.as_tensor(corner_table(np.concatenate(
            [s.surface_gradient(), s.albedo[..., None]], 2)), **f32)
        self.rmax = float(s.radius.max())
        _, _, u = _grid_directions(s.n_lat, s.n_lon)
        e = np.asarray(s.axes, np.float64)
        ratio = s.radius * np.sqrt(((u / e) ** 2).sum(-1))
        self.e = torch.as_tensor(e, dtype=torch.float64, device=device)
        self.k_in = 0.99 * float(ratio.min())
        self.k_out = 1.01 * float(ratio.max())
        self.R = body.R
        self.X = body.X
        self.Rt = torch.as_tensor(body.R, dtype=torch.float64, device=device)
        self.Xt = torch.as_tensor(body.X, dtype=torch.float64, device=device)
        self.step = self.rmax / self.CAM_STEPS_PER_RADIUS
        self.shadow_step = self.rmax / self.SHADOW_STEPS_PER_RADIUS
        self.tol = 5e-4 * self.rmax
        self._kl = (self.n_lat - 1) / math.pi
        self._kn = self.n_lon / (2 * math.pi)

    def _cell(self, x, y, z, rho):
        fi = torch.asin((z / rho).clamp_(-1.0, 1.0)).add_(math.pi / 2).mul_(self._kl)
        fj = torch.atan2(y, x).mul_(self._kn).add_(self.n_lon // 2)
        i0 = fi.floor().clamp_(0, self.n_lat - 2)
        j0 = fj.floor().clamp_(0, self.n_lon - 1)
        a = fi.sub_(i0)
        b = fj.sub_(j0)
        k = (i0.mul_(self.n_lon + 1).add_(j0)).long()
        return k, a, b

    def sdf(self, p):
        """|p| - r(u(p)) for body-frame points (M, 3)."""
        x, y, z = p.unbind(1)
        rho = torch.sqrt(x * x + y * y + z * z).clamp_min_(1e-6)
        k, a, b = self._cell(x, y, z, rho)
        c = self.t_r.index_select(0, k)
        c0, c1, c2, c3 = c.unbind(1)
        return rho - (c0 + a * c1 + b * (c2 + a * c3))

    def surface(self, p):
        """Unit normal (body frame) and albedo at body-frame surface points."""
        x, y, z = p.unbind(1)
        rho = torch.sqrt(x * x + y * y + z * z).clamp_min_(1e-6)
        k, a, b = self._cell(x, y, z, rho)
        c = self.t_r.index_select(0, k)
        r = c[:, 0] + a * c[:, 1] + b * (c[:, 2] + a * c[:, 3])
        t = self.t_ga.index_select(0, k)                                      # (M, 4, 4)
        a_, b_ = a[:, None], b[:, None]
        ga = t[:, 0] + a_ * t[:, 1] + b_ * (t[:, 2] + a_ * t[:, 3])          # (M, 4)
        u = p / rho[:, None]
        n = u - ga[:, :3] / r[:, None]
        n = n / n.norm(dim=1, keepdim=True).clamp_min(1e-9)
        return n, ga[:, 3]

    def to_body(self, P_world64):
        return (P_world64 - self.Xt) @ self.Rt

    def _ellipsoids(self, o64, d64):
        """Entry/exit parameters for the outer and inner bounding ellipsoids.
        Returns (t_out_in, t_out_out, hit_out, t_in_in, hit_in) float64."""
        oe = o64 / self.e
        de = d64 / self.e
        A = (de * de).sum(1)
        B = (oe * de).sum(1)
        C0 = (oe * oe).sum(1)
        disc = B * B - A * (C0 - self.k_out ** 2)
        disc_i = B * B - A * (C0 - self.k_in ** 2)
        sq = disc.clamp_min(0).sqrt()
        sqi = disc_i.clamp_min(0).sqrt()
        return (-B - sq) / A, (-B + sq) / A, disc > 0, (-B - sqi) / A, disc_i > 0

    def first_hit(self, o64, d, refine=None):
        """Nearest surface crossing of rays o + t d (o: (3,) or (N, 3) float64 body frame,
        d: (N, 3) float32 unit). Returns (ray indices hit, t float64, body-frame points)."""
        refine = self.BISECT if refine is None else refine
        n = d.shape[0]
        d64 = d.double()
        o64 = o64.expand(n, 3) if o64.dim() == 1 else o64
        t0, t1, hit_out, ti, inner = self._ellipsoids(o64, d64)
        cand = torch.nonzero(hit_out & (t1 > 0)).squeeze(1)
        t0, t1, ti, inner = t0[cand].clamp_min(0), t1[cand], ti[cand], inner[cand]
        o_c, d_c = o64[cand], d64[cand]
        t1 = torch.where(inner, ti, t1)
        q = (o_c + t0[:, None] * d_c).float()
        dd = d_c.float()
        L = (t1 - t0).float().clamp_min(0)
        nsteps = torch.ceil(L / self.step).clamp(1, 1024)
        nc = len(cand)
        found = torch.zeros(nc, dtype=torch.bool, device=self.device)
        k_hit = torch.zeros(nc, dtype=torch.float32, device=self.device)
        f_min = torch.full((nc,), float('inf'), dtype=torch.float32, device=self.device)
        k_min = torch.zeros(nc, dtype=torch.float32, device=self.device)
        kmax = int(nsteps.max().item()) if nc else 0
        kstart = 1
        while kstart <= kmax:
            act = torch.nonzero(~found & (nsteps >= kstart)).squeeze(1)
            if len(act) == 0:
                break
            ks = torch.arange(kstart, kstart + self.CHUNK, device=self.device,
                              dtype=torch.float32)[None]
            ns = nsteps[act][:, None]
            s = L[act][:, None] * (ks / ns)
            pts = q[act][:, None, :] + s[..., None] * dd[act][:, None, :]
            fval = self.sdf(pts.reshape(-1, 3)).reshape(len(act), self.CHUNK)
            valid = ks <= ns
            last = (ks == ns) & inner[act][:, None]
            neg = ((fval < 0) | (last & (fval <= 0))) & valid
            has = neg.any(1)
            first = neg.to(torch.uint8).argmax(1)
            hit_rows = act[has]
            found[hit_rows] = True
            k_hit[hit_rows] = ks[0, first[has]]
            # closest approach so far (for the grazing-ray refinement below)
            fm, km = torch.where(valid, fval, float('inf')).min(1)
            better = fm < f_min[act]
            f_min[act[better]] = fm[better]
            k_min[act[better]] = ks[0, km[better]]
            kstart += self.CHUNK
        step_len = L / nsteps
        lo_all = step_len * (k_hit - 1)
        hi_all = step_len * k_hit
        # Grazing rays: a thin sliver of the body (e.g. the equatorial ridge seen edge-on) can
        # fit between two coarse samples. Where the coarse samples came within one step of the
        # surface, search around the closest sample on finer grids (two levels of 16).
        near = torch.nonzero(~found & (f_min < step_len)).squeeze(1)
        if len(near):
            c_s = step_len[near] * k_min[near]           # centre of the search
            half = step_len[near]
            sub = torch.linspace(-1.0, 1.0, 17, device=self.device)[None]
            qn, dn, Ln = q[near], dd[near], L[near]
            ok = torch.zeros(len(near), dtype=torch.bool, device=self.device)
            lo_n = torch.zeros(len(near), device=self.device)
            hi_n = torch.zeros(len(near), device=self.device)
            for _ in range(2):
                todo = torch.nonzero(~ok).squeeze(1)
                if len(todo) == 0:
                    break
                sv = (c_s[todo][:, None] + half[todo][:, None] * sub).clamp(min=0)
                sv = torch.minimum(sv, Ln[todo][:, None])
                pts = qn[todo][:, None, :] + sv[..., None] * dn[todo][:, None, :]
                fval = self.sdf(pts.reshape(-1, 3)).reshape(len(todo), sub.shape[1])
                neg = fval < 0
                has = neg.any(1)
                first = neg.to(torch.uint8).argmax(1)
                rows = torch.arange(len(todo), device=self.device)
                hi_s = sv[rows, first]
                lo_s = sv[rows, (first - 1).clamp(min=0)]
                got = todo[has]
                ok[got] = True
                lo_n[got] = lo_s[has]
                hi_n[got] = hi_s[has]
                km = fval.argmin(1)
                c_s[todo] = sv[rows, km]
                half[todo] = half[todo] / 8
            found[near[ok]] = True
            lo_all[near[ok]] = lo_n[ok]
            hi_all[near[ok]] = hi_n[ok]
        sel = torch.nonzero(found).squeeze(1)
        lo, hi = lo_all[sel], hi_all[sel]
        qs, ds = q[sel], dd[sel]
        if refine:
            # bisection keeping the end values, then one secant (regula falsi) step
            f_lo = self.sdf(qs + lo[:, None] * ds)
            f_hi = self.sdf(qs + hi[:, None] * ds)
            for _ in range(refine):
                mid = 0.5 * (lo + hi)
                f_mid = self.sdf(qs + mid[:, None] * ds)
                inside = f_mid < 0
                hi = torch.where(inside, mid, hi)
                f_hi = torch.where(inside, f_mid, f_hi)
                lo = torch.where(inside, lo, mid)
                f_lo = torch.where(inside, f_lo, f_mid)
            w = (f_lo / (f_lo - f_hi).clamp_min(1e-9)).clamp(0, 1)
            hi = lo + w * (hi - lo)
        pts = qs + hi[:, None] * ds
        return cand[sel], t0[sel] + hi.double(), pts

    def occludes(self, P_world, sun_world, is_self):
        """Bool (N,): does this body block the sun from world points P (float64 (N, 3))?"""
        n = P_world.shape[0]
        out = torch.zeros(n, dtype=torch.bool, device=self.device)
        if n == 0:
            return out
        o64 = self.to_body(P_world)
        d64 = (torch.as_tensor(sun_world, dtype=torch.float64, device=self.device) @ self.Rt
               ).expand(n, 3)
        t_oi, t_oo, hit_out, t_ii, hit_in = self._ellipsoids(o64, d64)
        inner_hit = hit_in & (t_ii > 0)
        out |= inner_hit
        eps = self.SHADOW_START * self.rmax
        cand = torch.nonzero(hit_out & (t_oo > eps) & ~inner_hit).squeeze(1)
        if len(cand) == 0:
            return out
        t_lo = t_oi[cand].clamp_min(eps).float()
        t_hi = t_oo[cand].float()
        q = o64[cand].float()
        dd = d64[cand].float()
        L = t_hi - t_lo
        if is_self:
            # geometric steps from the surface (fine near it: crater rims, boulders), then
            # uniform steps of shadow_step once the geometric step would exceed it
            g = self.SHADOW_GROWTH
            t_switch = self.shadow_step / (g - 1)
            k_geo = max(0, math.ceil(math.log(max(t_switch / eps, 1.0)) / math.log(g)))
            t_geo_end = eps * g ** k_geo
            n_geo = k_geo + 1
            n_lin = torch.ceil(((t_hi - t_geo_end) / self.shadow_step).clamp_min(0))
            # last geometric index needed to pass t_hi
            n_need = torch.ceil(torch.log((t_hi / eps).clamp_min(1.0)) / math.log(g))
            nsteps = torch.where(t_hi <= t_geo_end, n_need, n_geo - 1 + n_lin)
        else:
            nsteps = torch.ceil(L / self.shadow_step).clamp_min(1)
        shadow = torch.zeros(len(cand), dtype=torch.bool, device=self.device)
        kmax = int(nsteps.max().item())
        kstart = 0
        while kstart <= kmax:
            act = torch.nonzero(~shadow & (nsteps >= kstart)).squeeze(1)
            if len(act) == 0:
                break
            ks = torch.arange(kstart, kstart + self.CHUNK, device=self.device,
                              dtype=torch.float32)[None]
            if is_self:
                t = torch.where(ks < n_geo, eps * g ** ks.clamp(max=n_geo - 1),
                                t_geo_end + (ks - (n_geo - 1)) * self.shadow_step)
                t = torch.minimum(t.expand(len(act), -1), t_hi[act][:, None])
                valid = ks <= nsteps[act][:, None]
            else:
                ns = nsteps[act][:, None]
                t = t_lo[act][:, None] + L[act][:, None] * (ks / ns)
                valid = ks <= ns
            pts = q[act][:, None, :] + t[..., None] * dd[act][:, None, :]
            fval = self.sdf(pts.reshape(-1, 3)).reshape(len(act), self.CHUNK)
            blocked = ((fval < -self.tol) & valid).any(1)
            shadow[act[blocked]] = True
            kstart += self.CHUNK
        out[cand[shadow]] = True
        return out


@torch.no_grad()
def render_radiance(scene: Scene, device='cpu') -> dict:
    """Noiseless radiance (H, W) float32 tensor + per-pixel body ids and statistics."""
    dev = resolve_device(device)
    size, f = scene.size, scene.focal
    dirs = _pixel_dirs(size, f, dev)                            # camera frame, (H*W, 3)
    camR = torch.as_tensor(scene.cam_R, dtype=torch.float64, device=dev)
    bodies = [_DeviceBody(scene.primary, dev)]
    if scene.moonlet is not None:
        bodies.append(_DeviceBody(scene.moonlet, dev))
    npx = size * size
    t_best = torch.full((npx,), float('inf'), dtype=torch.float64, device=dev)
    owner = torch.zeros(npx, dtype=torch.uint8, device=dev)
    hits = []
    for bi, body in enumerate(bodies):
        rel = body.X - scene.cam_C
        dist = float(np.linalg.norm(rel))
        dir_c = scene.cam_R @ (rel / dist)
        cos_lim = math.cos(math.asin(min(1.0, body.rmax * 1.001 / dist)) + 2.0 / f)
        cand = torch.nonzero(dirs @ torch.as_tensor(dir_c, dtype=torch.float32, device=dev)
                             > cos_lim).squeeze(1)
        if len(cand) == 0:
            hits.append(None)
            continue
        M = (camR @ body.Rt).float()                            # camera dir -> body dir
        d_b = dirs[cand] @ M
        o_b = torch.as_tensor((scene.cam_C - body.X) @ body.R, dtype=torch.float64, device=dev)
        idx, t, pts = body.first_hit(o_b, d_b)
        pix = cand[idx]
        hits.append((pix, t, pts))
        closer = t < t_best[pix]
        t_best[pix[closer]] = t[closer]
        owner[pix[closer]] = bi + 1
    radiance = torch.zeros(npx, dtype=torch.float32, device=dev)
    sun = scene.sun
    stats = {'lit_px': 0, 'shadow_by_other': [0, 0]}
    for bi, (body, h) in enumerate(zip(bodies, hits)):
        if h is None:
            continue
        pix, t, pts = h
        mine = owner[pix] == bi + 1
        pix, pts = pix[mine], pts[mine]
        n_b, alb = body.surface(pts)
        Rt32 = body.Rt.float()
        n_w = n_b @ Rt32.T
        v_w = -(dirs[pix] @ camR.float())                        # toward the camera (world)
        sun_t = torch.as_tensor(sun, dtype=torch.float32, device=dev)
        mu0 = n_w @ sun_t
        mu = (n_w * v_w).sum(1).clamp_min(1e-3)
        lit = mu0 > 0
        li = torch.nonzero(lit).squeeze(1)
        P = body.Xt + (pts[li] + n_b[li] * body.tol).double() @ body.Rt.T
        shadow = torch.zeros(len(li), dtype=torch.bool, device=dev)
        for bj, other in enumerate(bodies):
            occ = other.occludes(P, sun, is_self=(bj == bi))
            if bj != bi:
                stats['shadow_by_other'][bi] += int((occ & ~shadow).sum())
            shadow |= occ
        lit_idx = li[~shadow]
        val = alb[lit_idx] * scene.reflectance(mu0[lit_idx], mu[lit_idx], scene.phase_deg)
        radiance[pix[lit_idx]] = val
        stats['lit_px'] += len(lit_idx)
    prim_sil = torch.zeros(npx, dtype=torch.bool, device=dev)
    if hits[0] is not None:
        prim_sil[hits[0][0]] = True
    return {'radiance': radiance.view(size, size), 'owner': owner.view(size, size),
            'primary_silhouette': prim_sil.view(size, size), 'stats': stats}


@torch.no_grad()
def lit_surface_points(scene: Scene, device='cpu') -> np.ndarray:
    """Body-frame points (M, 3) of the primary's surface that the frame's pixels see lit: the
    first surface each such pixel's ray meets (not the moonlet, not in a shadow, inside the
    frame), one point per pixel."""
    dev = resolve_device(device)
    out = render_radiance(scene, dev)
    pix = torch.nonzero(((out['owner'] == 1) & (out['radiance'] > 0)).reshape(-1)).squeeze(1)
    if len(pix) == 0:
        return np.zeros((0, 3))
    body = _DeviceBody(scene.primary, dev)
    dirs = _pixel_dirs(scene.size, scene.focal, dev)[pix]
    to_body = (torch.as_tensor(scene.cam_R, dtype=torch.float64, device=dev) @ body.Rt).float()
    origin = torch.as_tensor((scene.cam_C - body.X) @ body.R, dtype=torch.float64, device=dev)
    _, _, pts = body.first_hit(origin, dirs @ to_body)
    return pts.double().cpu().numpy()


def _in_frame_fraction(scene: Scene, dev) -> float:
    """Fraction of the primary's projected silhouette inside the frame (coarse ray test)."""
    body = _DeviceBody(scene.primary, dev)
    rel = body.X - scene.cam_C
    cx, cy = scene.project(body.X)
    dist = float(np.linalg.norm(rel))
    r_px = scene.focal * math.tan(math.asin(min(0.999, body.rmax / dist))) * 1.05 + 2
    lo_x, hi_x, lo_y, hi_y = cx - r_px, cx + r_px, cy - r_px, cy + r_px
    if lo_x >= -0.5 and lo_y >= -0.5 and hi_x <= scene.size - 0.5 and hi_y <= scene.size - 0.5:
        return 1.0
    step = max(1.0, 2 * r_px / 160)
    xs = torch.arange(lo_x, hi_x, step, dtype=torch.float64, device=dev)
    ys = torch.arange(lo_y, hi_y, step, dtype=torch.float64, device=dev)
    yy, xx = torch.meshgrid(ys, xs, indexing='ij')
    c = scene.centre
    d = torch.stack([(xx - c) / scene.focal, (yy - c) / scene.focal, torch.ones_like(xx)],
                    -1).reshape(-1, 3)
    d = d / d.norm(dim=1, keepdim=True)
    M = torch.as_tensor(scene.cam_R @ body.R, dtype=torch.float64, device=dev)
    o_b = torch.as_tensor((scene.cam_C - body.X) @ body.R, dtype=torch.float64, device=dev)
    idx, _, _ = body.first_hit(o_b, (d @ M).float(), refine=6)
    if len(idx) == 0:
        return 0.0
    px, py = xx.reshape(-1)[idx], yy.reshape(-1)[idx]
    inside = (px >= -0.5) & (px < scene.size - 0.5) & (py >= -0.5) & (py < scene.size - 0.5)
    return float(inside.double().mean())


def _as_rng(rng_or_seed):
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    if isinstance(rng_or_seed, (tuple, list)):
        return np.random.default_rng(np.random.SeedSequence(list(rng_or_seed)))
    return np.random.default_rng(rng_or_seed)


def frame_scene(seed: int, index: int, size: int = 1024, **options) -> Scene:
    """The scene of frame `index` of a dataset rendered with `seed` (meta.csv columns seed and
    index), drawn again without rendering it."""
    return sample_scene(_as_rng((seed, index)), size, **options)


def render_scene(rng_or_seed, size: int = 1024, device='auto', **options):
    """Render one frame. Returns (image uint8 (size, size), (x, y) label, meta dict).

    `rng_or_seed`: a numpy Generator, an int seed, or a (seed, index) pair (what render_dataset
    uses for frame `index`). `options`: see `sample_scene` (test hooks such as perturb=False,
    moonlet=False, phase_deg=0, sensor={'noise': False})."""
    image, xy, meta, _ = render_scene_with_silhouette(rng_or_seed, size, device, **options)
    return image, xy, meta


@torch.no_grad()
def render_scene_with_silhouette(rng_or_seed, size: int = 1024, device='auto', **options):
    """`render_scene` plus the primary's silhouette: a bool (size, size) array, True where a
    camera ray meets the primary (night side and parts hidden by the moonlet included)."""
    rng = _as_rng(rng_or_seed)
    dev = resolve_device(device)
    scene = sample_scene(rng, size, **options)
    out = render_radiance(scene, dev)
    rad, owner, sil = out['radiance'], out['owner'], out['primary_silhouette']
    sp = scene.sensor

    body_px = owner > 0
    lit_vals = rad[body_px & (rad > 0)]
    if lit_vals.numel():
        k = max(1, int(0.995 * lit_vals.numel()))
        ref = float(lit_vals.kthvalue(k).values)
    else:
        ref = 1.0
    n_stars = 0
    if sp.n_stars:
        xs, ys, fl = sensor_model.star_field(rng, sp.n_stars, (~body_px).cpu().numpy(), ref)
        sensor_model.add_point_sources(rad, xs, ys, fl)
        n_stars = len(xs)
    blurred = sensor_model.blur(rad, sp.psf_sigma_px, sp.defocus_px)
    image, exp_info = sensor_model.expose(blurred, sp, rng, ref)

    x, y = scene.project(scene.com_world)
    assert -0.5 <= x < size - 0.5 and -0.5 <= y < size - 0.5 and math.isfinite(x + y)
    sil_np = sil.cpu().numpy()
    ys_, xs_ = np.nonzero(sil_np)
    sil_x = float(xs_.mean()) if len(xs_) else float('nan')
    sil_y = float(ys_.mean()) if len(ys_) else float('nan')
    border = bool(sil_np[0].any() or sil_np[-1].any() or sil_np[:, 0].any() or sil_np[:, -1].any())
    owner_np = owner.cpu().numpy()
    moon_px = int((owner_np == 2).sum())
    occl = 0
    if scene.moonlet is not None:
        occl = int(((owner_np == 2) & sil_np).sum())
    sun_cam = scene.cam_R @ scene.sun
    meta = {
        'size': size, 'x_coordinate': x, 'y_coordinate': y,
        'phase_deg': scene.phase_deg, 'range_km': scene.range_m / 1000.0,
        'apparent_diameter_px': 2 * scene.focal * scene.info['primary_r_eq_m'] / scene.range_m,
        'primary_diameter_m': scene.info['primary_diameter_m'],
        'primary_polar_ratio': scene.info['primary_polar_ratio'],
        'com_offset_m': scene.info['com_offset_m'],
        'sun_cam_x': sun_cam[0], 'sun_cam_y': sun_cam[1], 'sun_cam_z': sun_cam[2],
        'sun_image_angle_deg': math.degrees(math.atan2(sun_cam[1], sun_cam[0])),
        'in_frame_fraction': _in_frame_fraction(scene, dev) if border else 1.0,
        'cut_by_edge': int(border), 'primary_px': int(sil_np.sum()),
        'lit_px': out['stats']['lit_px'],
        'silhouette_x': sil_x, 'silhouette_y': sil_y,
        'com_minus_silhouette_x_px': x - sil_x, 'com_minus_silhouette_y_px': y - sil_y,
        'moonlet_visible': int(moon_px > 0), 'moonlet_px': moon_px,
        'moonlet_occludes': int(occl > 0),
        'moonlet_shadow_on_primary_px': out['stats']['shadow_by_other'][0],
        'primary_shadow_on_moonlet_px': out['stats']['shadow_by_other'][1],
        'psf_sigma_px': sp.psf_sigma_px, 'defocus_px': sp.defocus_px,
        'full_well_e': sp.full_well_e, 'peak_fraction': sp.peak_fraction, 'dark_e': sp.dark_e,
        'read_noise_e': sp.read_noise_e, 'black_level_dn': sp.black_level_dn,
        'gain_e_per_unit': exp_info['gain_e_per_unit'], 'saturated_px': exp_info['saturated_px'],
        'n_stars': n_stars, 'n_hot_pixels': sp.n_hot_pixels,
        'reflectance': scene.reflectance.describe(),
    }
    return image, (float(x), float(y)), meta, sil_np


# ----------------------------------------------------------------------------------------------
# Dataset writer
# ----------------------------------------------------------------------------------------------

def image_name(index: int) -> str:
    return f'{IMAGE_PREFIX}{index:06d}.png'


def _write_png_atomic(path: Path, image: np.ndarray):
    import cv2
    ok, buf = cv2.imencode('.png', image)
    if not ok:
        raise OSError(f'PNG encoding failed for {path}')
    tmp = path.with_name(path.name + '.tmp')
    with open(tmp, 'wb') as fh:
        fh.write(buf.tobytes())
    os.replace(tmp, path)


def render_dataset(out_dir, n: int, seed: int, size: int = 1024, device='auto',
                   start_index: int = 0, progress: bool = True, silhouettes: bool = True,
                   **options) -> dict:
    """Render frames start_index .. start_index + n - 1 into `out_dir` (layout: module doc;
    `silhouettes`: also write DIR/silhouettes/).

    Returns {'n', 'seconds', 'images_per_s', 'device', 'out_dir'}."""
    from tqdm import tqdm

    out = Path(out_dir)
    (out / 'images').mkdir(parents=True, exist_ok=True)
    if silhouettes:
        (out / 'silhouettes').mkdir(exist_ok=True)
    dev = resolve_device(device)
    names = {image_name(i) for i in range(start_index, start_index + n)}
    labels_path, meta_path = out / 'labels.csv', out / 'meta.csv'

    def merge(new_rows):
        # under a lock and from what is on disk *now*, so that several processes rendering
        # chunks into the same directory (--start-index) keep each other's rows
        with DirLock(out):
            old_labels = [r for r in read_rows(labels_path) if r.get('image_name') not in names]
            old_meta = [r for r in read_rows(meta_path) if r.get('image_name') not in names]
            if not new_rows and not labels_path.exists():
                return
            key = lambda r: r['image_name']
            write_csv_atomic(meta_path, META_FIELDS, sorted(old_meta + new_rows, key=key))
            write_csv_atomic(labels_path, LABEL_FIELDS, sorted(old_labels + new_rows, key=key))

    merge([])                               # drop rows we are about to re-render, first
    rows = []
    t0 = time.perf_counter()
    for i in tqdm(range(start_index, start_index + n), disable=not progress, unit='img',
                  desc=f'asteroid {size}px'):
        image, (x, y), meta, sil = render_scene_with_silhouette((seed, i), size, dev, **options)
        name = image_name(i)
        if silhouettes:
            _write_png_atomic(out / 'silhouettes' / name, sil.astype(np.uint8) * 255)
        _write_png_atomic(out / 'images' / name, image)
        rows.append({'image_name': name, 'seed': seed, 'index': i, **meta})
    seconds = time.perf_counter() - t0
    merge(rows)
    return {'n': n, 'seconds': seconds, 'images_per_s': n / seconds if seconds > 0 else float('inf'),
            'device': str(dev), 'out_dir': str(out)}
