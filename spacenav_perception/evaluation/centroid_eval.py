"""Centroid evaluation through the node's runtime path (InferenceEngine + CentroidPredictor).

Error = Euclidean distance between the predicted and the labelled centre of mass in
full-resolution pixels.  Statistics: n, mean, median, p90, p95, max.

Frames the model calls not-in-view (confidence < min_confidence) are *misses*: the node would
publish no centroid for them.  They are counted in ``n_no_target`` and left out of the pixel
statistics (which are over the ``n`` frames with a published centroid); ``all_frames`` repeats
the statistics with the predicted position used anyway.  The baseline (Otsu + centre of
brightness) is a miss when nothing lies above the threshold.

Where DIR/meta.csv (written by ``spacenav synth asteroid``) explains the frames, the result also
breaks the error down: ``by_phase`` (sun phase angle bins), ``by_edge_cut`` (body whole in the
frame or cut by the frame edge, column ``cut_by_edge``), ``by_reflectance`` (the renderer's
reflectance law family, column ``reflectance``: mcewen, lunar_lambert, minnaert, hapke) and
``relative_to_diameter`` (error divided by the body's apparent diameter in px, column
``apparent_diameter_px``: a scale-free figure, since the error of a shape-inference model grows
with the body's size in the image) and ``by_sun_axis`` (columns ``sun_cam_x``, ``sun_cam_y``: the
sun direction in camera axes, x right and y down as in the image): the model's error split into
the component along the sun's direction in the image (positive = towards the sun, i.e. towards
the lit side) and the component across it, over all frames and per phase bin. Inferring the
unlit part of a body moves the answer along the sun axis; errors across it do not come from that.
Data sets without those columns simply get no breakdown.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .baselines import BASELINES
from ..data.asteroid_dataset import read_image
from ..training.centroid_task import read_dataset

PHASE_BINS = (0, 30, 60, 90, 120, 180)


def stats(errors) -> dict:
    e = np.asarray([v for v in errors if math.isfinite(v)], np.float64)
    if not len(e):
        return {'n': 0, 'mean_px': None, 'median_px': None, 'p90_px': None, 'p95_px': None,
                'max_px': None}
    return {'n': int(len(e)), 'mean_px': float(e.mean()), 'median_px': float(np.median(e)),
            'p90_px': float(np.percentile(e, 90)), 'p95_px': float(np.percentile(e, 95)),
            'max_px': float(e.max())}


def _meta_float(meta, key: str) -> float:
    try:
        return float(meta.get(key, 'nan'))
    except (AttributeError, TypeError, ValueError):
        return math.nan


def _breakdown(rows: list, err: np.ndarray, base: dict) -> list:
    """[{**label, **stats(model), n_no_target, baselines: {k: stats}}] for each (label, mask)
    in `rows` whose mask selects at least one frame."""
    out = []
    for label, sel in rows:
        if not sel.any():
            continue
        row = {**label, **stats(err[sel]), 'n_no_target': int(np.sum(~np.isfinite(err[sel])))}
        row['baselines'] = {k: stats(v[sel]) for k, v in base.items()}
        out.append(row)
    return out


def _sun_axis_row(label: dict, along: np.ndarray, across: np.ndarray) -> dict:
    return {**label, 'n': int(len(along)),
            'median_abs_along_px': float(np.median(np.abs(along))),
            'median_along_px': float(np.median(along)), 'mean_along_px': float(np.mean(along)),
            'median_abs_across_px': float(np.median(np.abs(across)))}


def sun_axis_errors(xy_true, xy_pred, sun_xy):
    """(along, across) components of pred - true (N, 2 arrays) in the image: along the unit
    vector of `sun_xy` (N, 2; the sun direction's camera x, y), positive towards the sun, and
    across it (positive 90 degrees clockwise from the sun direction on screen, y down).
    Rows whose sun direction has no image component (or is unknown) get NaN."""
    d = np.asarray(xy_pred, np.float64) - np.asarray(xy_true, np.float64)
    s = np.asarray(sun_xy, np.float64)
    norm = np.hypot(s[:, 0], s[:, 1])
    with np.errstate(invalid='ignore', divide='ignore'):
        u = s / np.where(norm > 1e-9, norm, np.nan)[:, None]
    along = d[:, 0] * u[:, 0] + d[:, 1] * u[:, 1]
    across = -d[:, 0] * u[:, 1] + d[:, 1] * u[:, 0]
    return along, across


def _encoding(img: np.ndarray) -> str:
    if img.dtype == np.uint16:
        return 'mono16'
    if img.dtype == np.float32:
        return '32FC1'
    return 'mono8'


def evaluate_centroid(data, model=None, device='cpu', out=None, min_confidence=0.5,
                      limit=0, progress=True, perturbation: str = 'none',
                      zoom_refine: float | None = None) -> dict:
    """`perturbation`: a name from evaluation/perturbations.py applied to every frame before
    the model and the baselines see it (robustness figures; 'none': the frames as they are).
    `zoom_refine`: the predictor's second pass (core/zoom_refine.py; None: the manifest's)."""
    from .perturbations import perturb
    from ..core.centroid_predictor import CentroidPredictor
    from ..core.engine import InferenceEngine
    from ..paths import packaged_model_path
    model = Path(model) if model else packaged_model_path('centroid')
    engine = InferenceEngine(model, device=device, expected_task='centroid')
    predictor = CentroidPredictor(engine, min_confidence=min_confidence, zoom_refine=zoom_refine)
    data = Path(data)
    records = read_dataset(data, limit)
    names, err, err_any, base_err, latency = [], [], [], {k: [] for k in BASELINES}, []
    phase, diameter, cut, law, xy, sun = [], [], [], [], [], []
    n_no_target = n_skipped = n_refined = 0
    for rec in tqdm(records, desc='eval centroid', disable=not progress):
        name, x, y = rec.name, rec.x, rec.y
        img = read_image(rec.path)
        if img is None:
            n_skipped += 1
            continue
        img = perturb(img, perturbation, len(names))
        t0 = time.perf_counter()
        r = predictor.predict(img, _encoding(img))
        latency.append(time.perf_counter() - t0)
        n_refined += int(r.refined)
        d = math.hypot(r.x - x, r.y - y)
        err_any.append(d)
        if r.in_view:
            err.append(d)
        else:
            err.append(math.nan)
            n_no_target += 1
        for k, fn in BASELINES.items():
            bx, by = fn(img)
            base_err[k].append(math.hypot(bx - x, by - y))
        names.append(name)
        xy.append((x, y, r.x, r.y, r.confidence))
        phase.append(_meta_float(rec.meta, 'phase_deg'))
        diameter.append(_meta_float(rec.meta, 'apparent_diameter_px'))
        cut.append(_meta_float(rec.meta, 'cut_by_edge'))
        law.append(((rec.meta or {}).get('reflectance') or '').split(' ')[0])
        sun.append((_meta_float(rec.meta, 'sun_cam_x'), _meta_float(rec.meta, 'sun_cam_y')))
    result = stats(err)
    result.update({
        'n_frames': len(names), 'n_no_target': n_no_target, 'n_skipped': n_skipped,
        'no_target_policy': 'frames the model calls not-in-view are misses: counted in '
                            'n_no_target and excluded from the px statistics',
        'all_frames': stats(err_any),
        'baselines': {k: dict(stats(v), n_no_target=int(np.sum(~np.isfinite(v))))
                      for k, v in base_err.items()},
        'model': str(model), 'engine': engine.engine, 'device': engine.device,
        'data': str(data), 'min_confidence': min_confidence, 'perturbation': perturbation,
        'zoom_refine': predictor.zoom_refine, 'n_refined': n_refined,
        'predictor_latency_ms': {'p50': float(np.median(latency) * 1e3) if latency else None,
                                 'p90': float(np.percentile(latency, 90) * 1e3) if latency else None},
    })
    e, ea = np.asarray(err), {k: np.asarray(v) for k, v in base_err.items()}
    ph = np.asarray(phase)
    phase_bins = [({'phase_deg': [lo, hi]}, (ph >= lo) & (ph < hi))
                  for lo, hi in zip(PHASE_BINS[:-1], PHASE_BINS[1:])]
    if len(ph) and np.isfinite(ph).any():
        result['by_phase'] = _breakdown(phase_bins, e, ea)
    cuts = np.asarray(cut)
    if len(cuts) and np.isfinite(cuts).any():
        result['by_edge_cut'] = _breakdown(
            [({'cut_by_edge': v}, cuts == v) for v in (0, 1)], e, ea)
    laws = np.asarray(law, dtype=object)
    if len(laws) and any(laws):
        result['by_reflectance'] = _breakdown(
            [({'reflectance': v}, laws == v) for v in sorted(set(law) - {''})], e, ea)
    diam = np.asarray(diameter)
    known = np.isfinite(diam) & (diam > 0)
    if known.any():
        def rel(v):
            r = v[known] / diam[known]
            r = r[np.isfinite(r)]
            return ({'n': int(len(r)), 'median': float(np.median(r)),
                     'p95': float(np.percentile(r, 95))} if len(r) else {'n': 0})
        result['relative_to_diameter'] = {'model': rel(e), **{k: rel(v) for k, v in ea.items()}}
    xyv = np.asarray(xy, np.float64).reshape(-1, 5)
    along, across = sun_axis_errors(xyv[:, :2], xyv[:, 2:4],
                                    np.asarray(sun, np.float64).reshape(-1, 2))
    along[~np.isfinite(e)] = across[~np.isfinite(e)] = np.nan   # misses: no centroid
    ok = np.isfinite(along)
    if ok.any():
        result['by_sun_axis'] = [
            _sun_axis_row(label, along[sel], across[sel])
            for label, sel in [({'phase_deg': 'all'}, ok)] + [(b, ok & m) for b, m in phase_bins]
            if sel.any()]
    if out:
        from ..training import plots
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        plots.centroid_error_plot({'model': np.asarray(err), **{k: np.asarray(v) for k, v in
                                                                base_err.items()}},
                                  out / 'centroid_errors.png',
                                  phase=ph if np.isfinite(ph).any() else None)
        with open(out / 'centroid_eval.json', 'w') as f:
            json.dump(result, f, indent=2)
        with open(out / 'per_frame.csv', 'w') as f:
            f.write('image_name,x_true,y_true,x_pred,y_pred,confidence,error_px,error_any_px,' +
                    ','.join(f'{k}_error_px' for k in base_err) +
                    ',phase_deg,apparent_diameter_px,cut_by_edge,reflectance,'
                    'along_sun_px,across_sun_px\n')
            for i, n in enumerate(names):
                f.write(f'{n},' + ','.join(f'{v:.4f}' for v in xy[i]) +
                        f',{err[i]:.4f},{err_any[i]:.4f},' +
                        ','.join(f'{base_err[k][i]:.4f}' for k in base_err) +
                        f',{phase[i]},{diameter[i]},{cut[i]},{law[i]},'
                        f'{along[i]:.4f},{across[i]:.4f}\n')
    return result


def format_table(result: dict) -> str:
    def px(v) -> str:
        return '-' if v is None else f'{v:.2f}'

    def row(name, s, extra=''):
        return (f'{name:<10} {s["n"]:>5} {px(s["mean_px"]):>8} {px(s["median_px"]):>8} '
                f'{px(s["p90_px"]):>8} {px(s["p95_px"]):>8} {px(s["max_px"]):>9} {extra}')
    lines = [f'{"method":<10} {"n":>5} {"mean":>8} {"median":>8} {"p90":>8} {"p95":>8} {"max":>9}'
             '  [full-resolution px]',
             row('model', result, f'no-target: {result["n_no_target"]}')]
    for k, s in result['baselines'].items():
        lines.append(row(k, s, f'no-target: {s["n_no_target"]}'))
    if result.get('zoom_refine'):
        lines.append(f'zoom refine {result["zoom_refine"]:g}: second pass on '
                     f'{result["n_refined"]} of {result["n_frames"]} frames')
    rel = result.get('relative_to_diameter', {}).get('model', {})
    if rel.get('n'):
        lines.append(f'error / apparent diameter: median {rel["median"]:.4f}, p95 {rel["p95"]:.4f} '
                     f'(n {rel["n"]})')
    for b in result.get('by_edge_cut', []):
        where = 'cut by the frame edge' if b['cut_by_edge'] else 'whole in the frame'
        lines.append(f'{where}: model median {px(b["median_px"])} (n {b["n"]})')
    for b in result.get('by_phase', []):
        lines.append(f'phase {b["phase_deg"][0]:>3}-{b["phase_deg"][1]:<3}: model median '
                     f'{px(b["median_px"])} (n {b["n"]}), cob median '
                     f'{px(b["baselines"]["cob"]["median_px"])}')
    for b in result.get('by_reflectance', []):
        lines.append(f'reflectance {b["reflectance"]:<13}: model median {px(b["median_px"])}, '
                     f'p95 {px(b["p95_px"])} (n {b["n"]})')
    for b in result.get('by_sun_axis', []):
        ph = b['phase_deg'] if b['phase_deg'] == 'all' else '{}-{}'.format(*b['phase_deg'])
        lines.append(f'sun axis, phase {ph:<7}: |along| median {b["median_abs_along_px"]:.2f} '
                     f'(signed median {b["median_along_px"]:+.2f}, + = towards the sun), '
                     f'|across| median {b["median_abs_across_px"]:.2f} (n {b["n"]})')
    lat = result['predictor_latency_ms']
    if lat['p50'] is not None:
        lines.append(f'predictor latency p50 {lat["p50"]:.1f} ms ({result["engine"]}, {result["device"]})')
    return '\n'.join(lines)
