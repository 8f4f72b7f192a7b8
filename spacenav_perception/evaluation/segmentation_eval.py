"""Segmentation evaluation through the node's runtime path (InferenceEngine +
SegmentationPredictor): the predicted class map at the *input* (frame) resolution is compared
with the mask decoded from the dataset; one confusion matrix is accumulated over the whole set.
When the set's meta.csv has a ``reflectance`` column (``spacenav synth lunar --reflectance
varied``), one more confusion matrix per reflectance law family gives ``by_reflectance``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..core.class_map import DEFAULT_FLIP_AVERAGE, DEFAULT_UPSAMPLING
from ..core.hazard_specks import DEFAULT_MIN_HAZARD_REGION_PX
from .rock_detection import RockDetectionCounter, format_rocks
from ..training.segmentation_task import (CLASS_NAMES, NUM_CLASSES, list_samples, read_sample,
                                          scores)


def evaluate_segmentation(data, model=None, masks='clean', device='cpu', out=None, limit=0,
                          n_overlays=4, progress=True, perturbation: str = 'none',
                          min_hazard_region_px: float = DEFAULT_MIN_HAZARD_REGION_PX,
                          flip_average: bool = DEFAULT_FLIP_AVERAGE,
                          upsampling: str = DEFAULT_UPSAMPLING, logit_offset=None) -> dict:
    """`perturbation`: a name from evaluation/perturbations.py applied to every frame before
    the model sees it (robustness figures; 'none': the frames as they are).
    `min_hazard_region_px`, `flip_average`, `upsampling`, `logit_offset` (None: the manifest's):
    the predictor's post-processing (defaults: hazard_node's)."""
    from .perturbations import perturb
    from ..core.engine import InferenceEngine
    from ..core.segmentation_predictor import SegmentationPredictor
    from ..paths import packaged_model_path
    model = Path(model) if model else packaged_model_path('hazard')
    engine = InferenceEngine(model, device=device, expected_task='segmentation')
    predictor = SegmentationPredictor(engine, compute_safe_site=False,
                                      min_hazard_region_px=min_hazard_region_px,
                                      flip_average=flip_average, upsampling=upsampling,
                                      logit_offset=logit_offset)
    pairs = list_samples(data, masks)
    if limit:
        pairs = pairs[:limit]
    laws = _reflectance_families(data)
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    cm_law: dict[str, np.ndarray] = {}
    n_law: dict[str, int] = {}
    rocks = RockDetectionCounter()
    samples, latency, n = [], [], 0
    pick = set(np.linspace(0, len(pairs) - 1, min(n_overlays, len(pairs))).astype(int).tolist())
    for i, sample in enumerate(tqdm(pairs, desc='eval segmentation', disable=not progress)):
        pair = read_sample(sample)
        if pair is None:
            continue
        img, truth = pair
        img = perturb(img, perturbation, i)
        t0 = time.perf_counter()
        pred = predictor.predict(img, 'rgb8').classes
        latency.append(time.perf_counter() - t0)
        idx = truth.reshape(-1).astype(np.int64) * NUM_CLASSES + pred.reshape(-1)
        frame_cm = np.bincount(idx, minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)
        cm += frame_cm
        law = laws.get(Path(sample.image).name)
        if law:
            cm_law.setdefault(law, np.zeros_like(cm))
            cm_law[law] += frame_cm
            n_law[law] = n_law.get(law, 0) + 1
        rocks.add(truth, pred)
        n += 1
        if i in pick:
            samples.append((img, truth, pred))
    s = scores(cm)
    result = {'n': n, 'miou': s['miou'], 'pixel_accuracy': s['pixel_accuracy'], 'iou': s['iou'],
              'confusion_matrix': cm.tolist(), 'class_names': CLASS_NAMES, 'masks': masks,
              'rocks': rocks.result(),
              'model': str(model), 'engine': engine.engine, 'device': engine.device,
              'data': str(data), 'perturbation': perturbation,
              'min_hazard_region_px': float(min_hazard_region_px),
              'flip_average': bool(flip_average), 'upsampling': upsampling,
              'logit_offset': list(predictor.logit_offset),
              'predictor_latency_ms': {'p50': float(np.median(latency) * 1e3) if latency else None,
                                       'p90': float(np.percentile(latency, 90) * 1e3) if latency else None}}
    if cm_law:
        result['by_reflectance'] = []
        for law, c in sorted(cm_law.items()):
            sc = scores(c)
            result['by_reflectance'].append({'reflectance': law, 'n': n_law[law],
                                             'miou': sc['miou'], 'iou': sc['iou']})
    if out:
        from ..training import plots
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        plots.confusion_matrix_plot(cm, CLASS_NAMES, out / 'confusion_matrix.png')
        if samples:
            plots.segmentation_overlay([a / 255.0 for a, _, _ in samples],
                                       [b for _, b, _ in samples], [c for _, _, c in samples],
                                       out / 'overlays.png')
        with open(out / 'segmentation_eval.json', 'w') as f:
            json.dump(result, f, indent=2)
    return result


def _reflectance_families(data) -> dict:
    """image name -> reflectance law family from DATA/meta.csv (empty without the column)."""
    from ..synth.dataset_files import read_rows
    return {r['image_name']: r['reflectance'].split(' ')[0]
            for r in read_rows(Path(data) / 'meta.csv')
            if r.get('image_name') and (r.get('reflectance') or '').strip()}


def format_table(result: dict) -> str:
    lines = [f'n {result["n"]}  mIoU {result["miou"]:.4f}  pixel accuracy '
             f'{result["pixel_accuracy"]:.4f}  (masks: {result["masks"]})']
    for k, v in result['iou'].items():
        lines.append(f'  IoU {k:<11} {v:.4f}')
    if any(result.get('logit_offset') or []):
        lines.append('logit offset ' + ' '.join(f'{v:g}' for v in result['logit_offset']))
    for b in result.get('by_reflectance', []):
        lines.append(f'reflectance {b["reflectance"]:<13}: mIoU {b["miou"]:.4f}  ' + '  '.join(
            f'{k} {v:.3f}' for k, v in b['iou'].items()) + f'  (n {b["n"]})')
    if 'rocks' in result:
        lines += format_rocks(result['rocks'])
    lat = result['predictor_latency_ms']
    if lat['p50'] is not None:
        lines.append(f'predictor latency p50 {lat["p50"]:.1f} ms ({result["engine"]}, {result["device"]})')
    return '\n'.join(lines)
