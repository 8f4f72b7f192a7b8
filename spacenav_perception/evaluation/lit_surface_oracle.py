"""What the lit, visible surface alone tells about the centre of mass (centroid task study).

For each frame of a dataset written by ``spacenav synth asteroid`` (``meta.csv`` columns ``seed``
and ``index``), the scene is drawn again and the renderer's own ray caster finds the primary's
surface points that are both lit and seen by the camera (inside the frame, not hidden by the
moonlet, not in a shadow). An *oracle* estimator is then given the exact radius of the body at
every such point, the body's pose and the renderer's shape prior, and predicts the centre of
mass from those radii: the posterior mean of a probabilistic PCA of the radii, fitted on shapes
drawn from ``build_primary``. Its error is measured on held-out shapes seen through the same lit
set, turned into the frame's pixels and split along / across the sun's direction in the image.

This is not a bound either way: a non-linear estimator could get more from the same surface, and
a real one has to find the pose from pixels first. It answers one question: how much error
would remain if every lit, visible point of the surface were known exactly, i.e. how much of a
model's error the unseen (unlit or hidden) side explains.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..synth import asteroid
from ..synth.dataset_files import read_rows
from .centroid_eval import PHASE_BINS


@dataclass
class ShapePrior:
    """Probabilistic PCA of the primary's radii on a sub-sampled (lat, lon) node grid, the
    linear map from its latent to the centre of mass, and held-out shapes to measure errors."""
    grid: tuple            # (n_lat, n_lon) of the sub-sampled grid
    mean: np.ndarray       # (D,) mean radius per node, m
    loadings: np.ndarray   # (D, K) W: radii = mean + W z + noise, z ~ N(0, I)
    noise_var: float       # sigma^2 of the isotropic PPCA noise, m^2
    com_mean: np.ndarray   # (3,) centre of mass = com_mean + com_map z + residual
    com_map: np.ndarray    # (3, K)
    held_radii: np.ndarray  # (H, D)
    held_com: np.ndarray    # (H, 3) body frame, m

    def estimate(self, radii: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """Posterior-mean centre of mass (N, 3) from the radii (N, D) at the observed nodes."""
        w = self.loadings[observed]
        k = w.shape[1]
        post = np.linalg.inv(np.eye(k) + w.T @ w / self.noise_var)
        z = (radii[:, observed] - self.mean[observed]) @ w @ post.T / self.noise_var
        return self.com_mean + z @ self.com_map.T

    def error_covariance(self, observed: np.ndarray) -> np.ndarray:
        """3x3 covariance (body frame, m^2) of the oracle's error on the held-out shapes."""
        err = self.held_com - self.estimate(self.held_radii, observed)
        return err.T @ err / len(err)


def fit_shape_prior(n_shapes: int = 4000, seed: int = 987654, components: int = 250,
                    n_holdout: int = 500, subsample: int = 4, progress: bool = True) -> ShapePrior:
    """Draw n_shapes + n_holdout primaries from the renderer and fit the prior on the first
    n_shapes. `subsample`: keep every k-th node in latitude and longitude."""
    if components >= n_shapes:
        raise ValueError(f'components ({components}) must be fewer than n_shapes ({n_shapes})')
    rng = np.random.default_rng(seed)
    radii, coms = [], []
    for _ in tqdm(range(n_shapes + n_holdout), disable=not progress, unit='shape',
                  desc='shape prior'):
        shape, _ = asteroid.build_primary(rng)
        sub = shape.radius[::subsample, ::subsample]
        radii.append(sub.reshape(-1).astype(np.float32))
        coms.append(shape.centroid)
    grid = sub.shape
    radii = np.asarray(radii, np.float64)
    coms = np.asarray(coms)
    x, c = radii[:n_shapes], coms[:n_shapes]
    mean = x.mean(0)
    u, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    lam = s ** 2 / (n_shapes - 1)
    dim = x.shape[1]
    noise_var = float(lam[components:].sum() / (dim - components))
    loadings = vt[:components].T * np.sqrt(np.maximum(lam[:components] - noise_var, 0.0))
    z = u[:, :components] * math.sqrt(n_shapes - 1)            # unit-variance latent scores
    design = np.c_[np.ones(n_shapes), z]
    coef, *_ = np.linalg.lstsq(design, c, rcond=None)
    return ShapePrior(grid, mean, loadings, noise_var, coef[0], coef[1:].T,
                      radii[n_shapes:], coms[n_shapes:])


def lit_visible_nodes(scene, grid: tuple, device='cpu') -> np.ndarray:
    """Bool (n_lat, n_lon): the sub-sampled grid nodes nearest to a lit primary surface point that
    a pixel of the frame sees (what the image can show of the surface)."""
    observed = np.zeros(grid, bool)
    p = asteroid.lit_surface_points(scene, device)
    if len(p) == 0:
        return observed
    rho = np.linalg.norm(p, axis=1)
    lat = np.arcsin(np.clip(p[:, 2] / rho, -1, 1))
    lon = np.mod(np.arctan2(p[:, 1], p[:, 0]), 2 * np.pi)
    n_lat, n_lon = grid
    i = np.rint((lat + np.pi / 2) / np.pi * (n_lat - 1)).astype(int)
    j = np.rint(lon / (2 * np.pi) * n_lon).astype(int) % n_lon
    observed[i, j] = True
    return observed


def image_covariance(scene, cov_body: np.ndarray) -> np.ndarray:
    """2x2 covariance in the frame's pixels of a body-frame centre-of-mass error (m^2)."""
    r = scene.cam_R @ scene.primary.R
    cov_cam = r @ cov_body @ r.T
    x, y, z = scene.cam_R @ (scene.com_world - scene.cam_C)
    jac = scene.focal / z * np.array([[1.0, 0.0, -x / z], [0.0, 1.0, -y / z]])
    return jac @ cov_cam @ jac.T


def _quantiles(samples: np.ndarray) -> dict:
    return {'median_px': float(np.median(samples)), 'p95_px': float(np.percentile(samples, 95)),
            'mean_px': float(samples.mean())}


def read_frames(data, limit: int = 0) -> list:
    """meta.csv rows of a dataset written by `spacenav synth asteroid` (ValueError otherwise)."""
    meta = read_rows(Path(data) / 'meta.csv')
    if not meta:
        raise ValueError(f'{data}/meta.csv is missing or empty')
    missing = [c for c in ('seed', 'index', 'size', 'x_coordinate', 'y_coordinate')
               if c not in meta[0]]
    if missing:
        raise ValueError(f'{data}/meta.csv has no {", ".join(missing)} column(s): frames written '
                         'by `spacenav synth asteroid` are needed to draw their scenes again')
    return meta[:limit] if limit else meta


def study(data, prior: ShapePrior, limit: int = 0, device='cpu', progress: bool = True,
          draws: int = 200, model_per_frame=None) -> dict:
    """Oracle error for every frame of `data` (its meta.csv must have seed and index).
    `model_per_frame`: a per_frame.csv from `spacenav eval centroid --out`, to put the model's
    own errors on the same frames beside the oracle's."""
    meta = read_frames(data, limit)
    model_err = {}
    if model_per_frame:
        if not Path(model_per_frame).is_file():
            raise FileNotFoundError(f'no such per-frame CSV: {model_per_frame}')
        model_err = {r['image_name']: float(r['error_any_px'])
                     for r in read_rows(Path(model_per_frame))}
    rng = np.random.default_rng(0)
    frames, pooled = [], []
    for row in tqdm(meta, disable=not progress, unit='frame', desc='lit-surface oracle'):
        scene = asteroid.frame_scene(int(row['seed']), int(row['index']), int(row['size']))
        x, y = scene.project(scene.com_world)
        if abs(x - float(row['x_coordinate'])) + abs(y - float(row['y_coordinate'])) > 1e-3:
            raise ValueError(f"{row['image_name']}: the scene drawn again from seed {row['seed']}, "
                             f"index {row['index']} puts the centre of mass at ({x:.3f}, {y:.3f}), "
                             f"not at the recorded ({row['x_coordinate']}, {row['y_coordinate']}): "
                             'the renderer has changed since these frames were written')
        observed = lit_visible_nodes(scene, prior.grid, device)
        cov = image_covariance(scene, prior.error_covariance(observed.reshape(-1)))
        sun = (scene.cam_R @ scene.sun)[:2]
        axis = sun / max(float(np.linalg.norm(sun)), 1e-12)
        along = float(axis @ cov @ axis)
        chol = np.linalg.cholesky(cov + 1e-12 * np.eye(2))
        e = np.linalg.norm(rng.standard_normal((draws, 2)) @ chol.T, axis=1)
        pooled.append(e)
        frames.append({'image_name': row['image_name'], 'phase_deg': scene.phase_deg,
                       'observed_node_fraction': float(observed.mean()),
                       'oracle_rms_px': float(math.sqrt(max(np.trace(cov), 0.0))),
                       'oracle_along_sun_rms_px': math.sqrt(max(along, 0.0)),
                       'oracle_across_sun_rms_px': math.sqrt(max(np.trace(cov) - along, 0.0)),
                       'model_error_px': model_err.get(row['image_name'])})
    pooled = np.asarray(pooled)
    column = lambda key: np.array([f[key] for f in frames], np.float64)
    phase = column('phase_deg')
    along2 = column('oracle_along_sun_rms_px') ** 2
    across2 = column('oracle_across_sun_rms_px') ** 2
    result = {'n': len(frames), 'oracle': _quantiles(pooled), 'by_phase': [],
              'prior': {'grid': list(prior.grid), 'components': int(prior.loadings.shape[1]),
                        'held_out_shapes': int(len(prior.held_com)),
                        'com_offset_median_m': float(np.median(
                            np.linalg.norm(prior.held_com, axis=1)))}}
    have_model = bool(model_err) and all(f['model_error_px'] is not None for f in frames)
    if have_model:
        model = column('model_error_px')
        result['model'] = _quantiles(model)
    for lo, hi in zip(PHASE_BINS[:-1], PHASE_BINS[1:]):
        sel = (phase >= lo) & (phase < hi)
        if not sel.any():
            continue
        row = {'phase_deg': [lo, hi], 'n': int(sel.sum()),
               'oracle_median_px': float(np.median(pooled[sel])),
               'oracle_along_sun_rms_px': float(np.sqrt(along2[sel].mean())),
               'oracle_across_sun_rms_px': float(np.sqrt(across2[sel].mean()))}
        if have_model:
            row['model_median_px'] = float(np.median(model[sel]))
        result['by_phase'].append(row)
    result['frames'] = frames
    return result


def format_table(result: dict) -> str:
    o = result['oracle']
    lines = [f"lit-surface oracle on {result['n']} frames (pooled over draws): "
             f"median {o['median_px']:.2f} px, p95 {o['p95_px']:.2f}, mean {o['mean_px']:.2f}"]
    if 'model' in result:
        m = result['model']
        lines.append(f"model on the same frames: median {m['median_px']:.2f} px, "
                     f"p95 {m['p95_px']:.2f}, mean {m['mean_px']:.2f}")
    lines.append(f"{'phase [deg]':<12}{'n':>5}{'oracle median':>15}{'along rms':>11}"
                 f"{'across rms':>12}{'model median':>14}")
    for r in result['by_phase']:
        lo, hi = r['phase_deg']
        model = f"{r['model_median_px']:>14.2f}" if 'model_median_px' in r else f"{'-':>14}"
        lines.append(f"{f'{lo}-{hi}':<12}{r['n']:>5}{r['oracle_median_px']:>15.2f}"
                     f"{r['oracle_along_sun_rms_px']:>11.2f}{r['oracle_across_sun_rms_px']:>12.2f}"
                     f"{model}")
    return '\n'.join(lines)
