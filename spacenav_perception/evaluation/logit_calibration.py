"""Per-class logit offsets that maximise mIoU on validation data. ROS-free.

A segmentation manifest may carry `logit_offset`: one number per class that
SegmentationPredictor adds to the network's (flip-averaged) logits before the argmax. A network
trained with class-weighted losses over-predicts its rare classes; shifting their logits down
moves the decision boundary to where the IoU is highest (and shifting them up buys recall).

`OffsetSearch` scores every candidate offset vector on the same frames in one pass: the
predictor's scores at the frame resolution are computed once per frame (with no offset), and
each candidate's class map is the argmax of scores + offset (ties: the lower class id, as the
predictor). Pixels that no candidate can move (a class without an offset beats every offset
class even at its largest offset) are counted once. Speck removal (min_hazard_region_px) is
not applied while searching; `spacenav eval segmentation` afterwards measures the whole path.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..training.segmentation_task import scores as confusion_scores

DEFAULT_VALUES = tuple(float(v) for v in np.round(np.arange(-2.0, 1.0001, 0.25), 2))


class OffsetSearch:
    """Confusion matrices of many candidate logit offsets, accumulated frame by frame.

    candidates: the grid `values` x ... over `classes` (0 for the other classes), plus each
    of `extra` (full offset vectors, e.g. the manifest's), plus zeros (the network's argmax)."""

    def __init__(self, n_classes: int, classes, values=DEFAULT_VALUES, extra=()):
        self.n = int(n_classes)
        self.classes = tuple(int(c) for c in classes)
        if not self.classes or len(set(self.classes)) != len(self.classes) or \
                any(not 0 <= c < self.n for c in self.classes):
            raise ValueError(f'classes {list(classes)}: distinct class ids in 0..{self.n - 1}, '
                             'at least one')
        self.values = tuple(float(v) for v in values)
        if not self.values or not np.all(np.isfinite(self.values)):
            raise ValueError(f'values {list(values)}: finite numbers, at least one')
        zero = (0.0,) * self.n
        cands = [zero]
        for combo in itertools.product(self.values, repeat=len(self.classes)):
            vec = [0.0] * self.n
            for c, v in zip(self.classes, combo):
                vec[c] = v
            cands.append(tuple(vec))
        for vec in extra:
            vec = tuple(float(v) for v in vec)
            if len(vec) != self.n or not np.all(np.isfinite(vec)):
                raise ValueError(f'offset {list(vec)}: {self.n} finite numbers')
            cands.append(vec)
        self.candidates = list(dict.fromkeys(cands))    # unique, zeros first
        offsets = np.array(self.candidates, np.float32)                   # (K, C)
        self._offsets = offsets[:, :, None]
        self._active = np.flatnonzero(np.any(offsets != 0, axis=0))      # classes that move
        self._fixed = np.setdiff1d(np.arange(self.n), self._active)
        self._top = offsets.max(axis=0)[self._active][:, None]           # largest offset
        self.confusion = np.zeros((len(self.candidates), self.n, self.n), np.int64)
        self.frames = 0

    def add(self, scores: np.ndarray, truth: np.ndarray) -> None:
        """scores (C, H, W) float with no offset applied; truth (H, W) class ids (ids >= C are
        ignored)."""
        if scores.ndim != 3 or scores.shape[0] != self.n or scores.shape[1:] != truth.shape:
            raise ValueError(f'scores {scores.shape} do not fit {self.n} classes x truth '
                             f'{truth.shape}')
        flat = scores.reshape(self.n, -1)
        t = truth.reshape(-1).astype(np.int64)
        keep = t < self.n
        if not keep.all():
            flat, t = flat[:, keep], t[keep]
        nn = self.n * self.n
        if len(self._fixed) and len(self._active):
            best_fixed = flat[self._fixed].max(axis=0)
            reach = (flat[self._active] + self._top).max(axis=0)
            decided = best_fixed > reach
            pred = self._fixed[flat[self._fixed][:, decided].argmax(axis=0)]
            self.confusion += np.bincount(t[decided] * self.n + pred,
                                          minlength=nn).reshape(self.n, self.n)
            flat, t = flat[:, ~decided], t[~decided]
        base = t * self.n
        for k, off in enumerate(self._offsets):
            pred = (flat + off).argmax(axis=0)
            self.confusion[k] += np.bincount(base + pred, minlength=nn).reshape(self.n, self.n)
        self.frames += 1

    def recall_precision(self, index: int) -> tuple:
        """Pixel recall and precision of the searched classes taken together (for the hazard
        classes: of /hazard_mask); NaN where undefined."""
        cm = self.confusion[index]
        group = list(self.classes)
        hit = cm[np.ix_(group, group)].sum()
        truth, called = cm[group, :].sum(), cm[:, group].sum()
        return (hit / truth if truth else float('nan'), hit / called if called else float('nan'))

    def summary(self, index: int, class_names=()) -> dict:
        names = list(class_names) or [str(c) for c in range(self.n)]
        s = confusion_scores(self.confusion[index], names)
        recall, precision = self.recall_precision(index)
        return {'logit_offset': list(self.candidates[index]), 'miou': s['miou'], 'iou': s['iou'],
                'recall': float(recall), 'precision': float(precision)}

    def index_of(self, offset) -> int:
        return self.candidates.index(tuple(float(v) for v in offset))

    def best_index(self, min_recall: float | None = None) -> int | None:
        """The candidate with the highest mIoU (the first of equals: zeros come first); with
        `min_recall`, among those whose recall of the searched classes (recall_precision) is at
        least that (None when none is)."""
        mious = []
        for k, cm in enumerate(self.confusion):
            ok = min_recall is None or self.recall_precision(k)[0] >= min_recall
            mious.append(confusion_scores(cm)['miou'] if ok else np.nan)
        if np.all(np.isnan(mious)):
            return None
        return int(np.nanargmax(mious))


def calibrate_logit_offsets(data_dirs, model=None, masks: str = 'clean', device: str = 'cpu',
                            classes=None, values=DEFAULT_VALUES, flip_average: bool = True,
                            limit: int = 0, progress: bool = True,
                            min_recall: float | None = None) -> dict:
    """Search logit offsets on the frames of `data_dirs` (Kaggle layout) through the node's
    predictor (InferenceEngine + SegmentationPredictor with the manifest's offset replaced by
    zeros). `classes`: class ids or names to search (default: the hazard classes, small and
    large rock). `min_recall`: only candidates whose pixel recall of those classes taken
    together is at least this (e.g. the recall with no offset, so that no hazard is traded).
    Returns {'best', 'none', 'manifest', 'n', ...}; 'best'/'none'/'manifest' as
    OffsetSearch.summary ('best' None when no candidate keeps min_recall)."""
    from pathlib import Path
    from tqdm import tqdm
    from ..core.engine import InferenceEngine
    from ..core.segmentation_predictor import SegmentationPredictor
    from ..paths import packaged_model_path
    from ..training.segmentation_task import list_samples, read_sample
    model = Path(model) if model else packaged_model_path('hazard')
    engine = InferenceEngine(model, device=device, expected_task='segmentation')
    names = list(engine.manifest.class_names)
    if not names:
        raise ValueError(f'{model}: the manifest lists no class names')
    n = len(names)
    if classes is None:
        from ..core.lunar_classes import HAZARD_CLASSES
        classes = list(HAZARD_CLASSES)
    ids = []
    for c in classes:
        if isinstance(c, str) and not c.isdigit():
            if c not in names:
                raise ValueError(f'class {c!r} is not one of {", ".join(names)}')
            ids.append(names.index(c))
        else:
            ids.append(int(c))
    shipped = list(engine.manifest.logit_offset)
    search = OffsetSearch(n, ids, values, extra=[shipped] if shipped else [])
    predictor = SegmentationPredictor(engine, compute_safe_site=False, min_hazard_region_px=0,
                                      flip_average=flip_average, logit_offset=[0.0] * n)
    samples = [s for d in data_dirs for s in list_samples(d, masks)]
    if limit:
        samples = samples[:limit]
    for sample in tqdm(samples, desc='calibrate', disable=not progress):
        pair = read_sample(sample)
        if pair is None:
            continue
        image, truth = pair
        search.add(predictor.scores(image, 'rgb8'), truth)
    if not search.frames:
        raise ValueError('no readable frame in ' + ', '.join(str(d) for d in data_dirs))
    best = search.best_index(min_recall)
    return {'n': search.frames, 'data': [str(d) for d in data_dirs], 'masks': masks,
            'model': str(model), 'engine': engine.engine, 'flip_average': bool(flip_average),
            'classes': [names[c] for c in search.classes], 'values': list(search.values),
            'candidates': len(search.candidates), 'speck_removal': False,
            'min_recall': min_recall,
            'export_command': engine.manifest.export_command,
            'best': search.summary(best, names) if best is not None else None,
            'none': search.summary(search.index_of([0.0] * n), names),
            'manifest': search.summary(search.index_of(shipped), names) if shipped else None}


def format_calibration(result: dict) -> str:
    names = list(result['none']['iou'])
    group = '+'.join(result['classes'])
    lines = [f'{result["n"]} frames, {result["candidates"]} candidate offsets over '
             f'{", ".join(result["classes"])} (speck removal off while searching)',
             f'{"":10s} {"mIoU":>7s} ' + ' '.join(f'{n:>10s}' for n in names)
             + f'  {group} recall / precision  logit_offset']
    for label in ('none', 'manifest', 'best'):
        row = result.get(label)
        if row is None:
            continue
        lines.append(f'{label:10s} {row["miou"]:7.4f} '
                     + ' '.join(f'{row["iou"][n]:10.4f}' for n in names)
                     + f'  {row["recall"]:.3f} / {row["precision"]:.3f}  '
                     + ' '.join(f'{v:g}' for v in row['logit_offset']))
    if result['best'] is None:
        lines.append(f'no candidate keeps the {group} recall at {result["min_recall"]:g} or more')
        return '\n'.join(lines)
    values = ' '.join(f'{v:g}' for v in result['best']['logit_offset'])
    lines.append(f'to ship the best: the model\'s export command with --logit-offset {values}'
                 + (f' ({result["export_command"]})' if result.get('export_command') else ''))
    return '\n'.join(lines)
