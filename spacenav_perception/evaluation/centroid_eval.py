"""Centroid evaluation through the node's runtime path (InferenceEngine + CentroidPredictor).

Error = Euclidean distance between the predicted and the labelled centre of mass in
full-resolution pixels.  Statistics: n, mean, median, p90, p95, max.

Frames the model calls not-in-view (confidence < min_confidence) are *misses*: the node would
publish no centroid for them.  They are counted in ``n_no_target`` and left out of the pixel
statistics (which are over the ``n`` frames with a published centroid); ``all_frames`` repeats
the statistics with the predicted position used anyway.  The baseline (Otsu + centre of
brightness) is a miss when nothing lies above the threshold.
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


def _encoding(img: np.ndarray) -> str:
    if img.dtype == np.uint16:
        return 'mono16'
    if img.dtype == np.float32:
        return '32FC1'
    return 'mono8'


def evaluate_centroid(data, model=None, device='cpu', out=None, min_confidence=0.5,
                      limit=0, progress=True) -> dict:
    from ..core.centroid_predictor import CentroidPredictor
    from ..core.engine import InferenceEngine
    from ..paths import packaged_model_path
    model = Path(model) if model else packaged_model_path('centroid')
    engine = InferenceEngine(model, device=device, expected_task='centroid')
    predictor = CentroidPredictor(engine, min_confidence=min_confidence)
    data = Path(data)
    records = read_dataset(data, limit)
    names, err, err_any, base_err, phase, latency = [], [], [], {k: [] for k in BASELINES}, [], []
    n_no_target = n_skipped = 0
    for rec in tqdm(records, desc='eval centroid', disable=not progress):
        name, x, y = rec.name, rec.x, rec.y
        img = read_image(rec.path)
        if img is None:
            n_skipped += 1
            continue
        t0 = time.perf_counter()
        r = predictor.predict(img, _encoding(img))
        latency.append(time.perf_counter() - t0)
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
        try:
            phase.append(float(rec.meta.get('phase_deg', 'nan')))
        except (TypeError, ValueError):
            phase.append(math.nan)
    result = stats(err)
    result.update({
        'n_frames': len(names), 'n_no_target': n_no_target, 'n_skipped': n_skipped,
        'no_target_policy': 'frames the model calls not-in-view are misses: counted in '
                            'n_no_target and excluded from the px statistics',
        'all_frames': stats(err_any),
        'baselines': {k: dict(stats(v), n_no_target=int(np.sum(~np.isfinite(v))))
                      for k, v in base_err.items()},
        'model': str(model), 'engine': engine.engine, 'device': engine.device,
        'data': str(data), 'min_confidence': min_confidence,
        'predictor_latency_ms': {'p50': float(np.median(latency) * 1e3) if latency else None,
                                 'p90': float(np.percentile(latency, 90) * 1e3) if latency else None},
    })
    ph = np.asarray(phase)
    if len(ph) and np.isfinite(ph).any():
        by = []
        e, ea = np.asarray(err), {k: np.asarray(v) for k, v in base_err.items()}
        for lo, hi in zip(PHASE_BINS[:-1], PHASE_BINS[1:]):
            sel = (ph >= lo) & (ph < hi)
            if not sel.any():
                continue
            row = {'phase_deg': [lo, hi], **stats(e[sel]),
                   'n_no_target': int(np.sum(~np.isfinite(e[sel])))}
            row['baselines'] = {k: stats(v[sel]) for k, v in ea.items()}
            by.append(row)
        result['by_phase'] = by
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
            f.write('image_name,error_px,error_any_px,' +
                    ','.join(f'{k}_error_px' for k in base_err) + ',phase_deg\n')
            for i, n in enumerate(names):
                f.write(f'{n},{err[i]:.4f},{err_any[i]:.4f},' +
                        ','.join(f'{base_err[k][i]:.4f}' for k in base_err) + f',{phase[i]}\n')
    return result


def format_table(result: dict) -> str:
    def row(name, s, extra=''):
        f = lambda v: '-' if v is None else f'{v:.2f}'
        return (f'{name:<10} {s["n"]:>5} {f(s["mean_px"]):>8} {f(s["median_px"]):>8} '
                f'{f(s["p90_px"]):>8} {f(s["p95_px"]):>8} {f(s["max_px"]):>9} {extra}')
    lines = [f'{"method":<10} {"n":>5} {"mean":>8} {"median":>8} {"p90":>8} {"p95":>8} {"max":>9}'
             '  [full-resolution px]',
             row('model', result, f'no-target: {result["n_no_target"]}')]
    for k, s in result['baselines'].items():
        lines.append(row(k, s, f'no-target: {s["n_no_target"]}'))
    for b in result.get('by_phase', []):
        lines.append(f'phase {b["phase_deg"][0]:>3}-{b["phase_deg"][1]:<3}: model median '
                     f'{b["median_px"] if b["median_px"] is None else round(b["median_px"], 2)} '
                     f'(n {b["n"]}), cob median '
                     f'{b["baselines"]["cob"]["median_px"] and round(b["baselines"]["cob"]["median_px"], 2)}')
    lat = result['predictor_latency_ms']
    if lat['p50'] is not None:
        lines.append(f'predictor latency p50 {lat["p50"]:.1f} ms ({result["engine"]}, {result["device"]})')
    return '\n'.join(lines)
