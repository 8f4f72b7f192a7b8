"""Online (streaming) evaluation core of the eval node: stamp matching and running figures.

ROS-free: the eval node converts messages and calls this; the unit tests call it directly.

Matching. Predictions and truths of one task are joined by their header stamp (int ns):

    matched      truth and prediction with the same stamp; scored once
    missed       a truth whose prediction never came (e.g. the node said "no target",
                 dropped the frame, or answered after `timeout_s`): finalised when it ages out,
                 is evicted, or at the end (finalize())
    unmatched    a prediction without a truth (e.g. a target the truth says is not in view)
    duplicates   a second message for a stamp already pending or scored on the same stream:
                 counted, never scored twice
    late         a prediction for a stamp already finalised as missed (counted, not scored)
    evicted      pending entries pushed out because more than `max_pending` waited on one
                 stream (oldest first); an evicted truth also counts as missed, an evicted
                 prediction as unmatched

Figures:
    centroid      Euclidean error in pixels per matched frame; mean, median, p95, max
                  (every error is kept: 8 bytes per frame)
    hazard        binary IoU of the hazard masks (255 = hazard): pooled over all matched frames
                  (sum of intersections / sum of unions) and the mean of per-frame IoUs
    segmentation  confusion matrix over class ids -> per-class IoU and mIoU (mean over the
                  classes that occur in truth or prediction), pixel accuracy
    latency       per task: receipt of the answer - receipt of the frame's image at the
                  evaluator (both on the evaluator's clock), when the image was seen

Pictures (write_pictures): small thumbnails only. The evaluator keeps at most `max_pending`
image thumbnails of frames still open, a fixed number of sample frames for contact sheets and
the `worst_k` worst frames per task (a heap), never all frames.
"""
from __future__ import annotations

import heapq
import json
import math
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spacenav_perception.core.latency import LatencyWindow
from spacenav_perception.core.lunar_classes import CLASS_NAMES

DEFAULT_CLASS_NAMES = CLASS_NAMES
THUMB_MAX_SIDE = 256


# --------------------------------------------------------------------------- statistics

def summarize_errors(errors) -> dict:
    """n, mean, median, p95, max of a sequence of errors (NaN figures when empty).

    Percentiles are numpy's default (linear interpolation between order statistics).
    """
    values = np.asarray(errors, dtype=np.float64)
    if values.size == 0:
        nan = float('nan')
        return {'n': 0, 'mean': nan, 'median': nan, 'p95': nan, 'max': nan}
    return {'n': int(values.size), 'mean': float(values.mean()),
            'median': float(np.median(values)), 'p95': float(np.percentile(values, 95)),
            'max': float(values.max())}


def centroid_error(pred_xy, truth_xy) -> float:
    return float(math.hypot(float(pred_xy[0]) - float(truth_xy[0]),
                            float(pred_xy[1]) - float(truth_xy[1])))


def binary_iou_counts(pred: np.ndarray, truth: np.ndarray) -> tuple:
    """(intersection, union) pixel counts of two masks (non-zero = positive)."""
    p = np.asarray(pred) != 0
    t = np.asarray(truth) != 0
    return int(np.count_nonzero(p & t)), int(np.count_nonzero(p | t))


def iou_from_counts(intersection: int, union: int) -> float:
    """IoU; 1.0 when both masks are empty (nothing to find, nothing found)."""
    return 1.0 if union == 0 else intersection / union


def confusion(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> np.ndarray:
    """n_classes x n_classes counts, rows = truth, columns = prediction (ids >= n ignored)."""
    t = np.asarray(truth, dtype=np.int64).ravel()
    p = np.asarray(pred, dtype=np.int64).ravel()
    keep = (t < n_classes) & (p < n_classes) & (t >= 0) & (p >= 0)
    return np.bincount(t[keep] * n_classes + p[keep],
                       minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_iou(cm: np.ndarray) -> list:
    """IoU per class from a confusion matrix; NaN for classes absent from truth and prediction."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)
    return [float(v) for v in iou]


def mean_iou(ious) -> float:
    values = [v for v in ious if not math.isnan(v)]
    return float(np.mean(values)) if values else float('nan')


def resize_nearest(mask: np.ndarray, shape) -> np.ndarray:
    """Nearest-neighbour resize of a label mask to (H, W) with the pixel-centre convention."""
    import cv2
    h, w = shape[:2]
    return cv2.resize(np.ascontiguousarray(mask), (w, h), interpolation=cv2.INTER_NEAREST)


def make_thumbnail(image: np.ndarray, max_side: int = THUMB_MAX_SIDE):
    """(thumbnail uint8 RGB, scale) with thumbnail = image resized by `scale` (<= 1)."""
    import cv2
    img = np.asarray(image)
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:
            img = (img >> 8).astype(np.uint8)
        else:
            img = np.clip(np.nan_to_num(img.astype(np.float32)) * 255.0, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    h, w = img.shape[:2]
    scale = min(1.0, max_side / float(max(h, w)))
    if scale < 1.0:
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
    else:
        img = np.array(img, dtype=np.uint8, copy=True)   # never a view on a message buffer
    return np.ascontiguousarray(img), scale


# --------------------------------------------------------------------------- matching

@dataclass
class StreamCounters:
    received: int = 0
    duplicates: int = 0
    evicted: int = 0


class PairMatcher:
    """Joins a truth stream and a prediction stream by stamp (see the module docstring).

    add_truth / add_pred return the (stamp, truth, pred, truth_time, pred_time) pair when the
    message completes one, else None. expire(now) and finalize() close what is pending and
    return the stamps closed as missed.
    """

    def __init__(self, max_pending: int = 200, timeout_s: float | None = None,
                 memory: int = 4096):
        if max_pending < 1:
            raise ValueError('max_pending must be >= 1')
        self.max_pending = int(max_pending)
        self.timeout_s = timeout_s
        self._memory = int(memory)
        self.truth = StreamCounters()
        self.pred = StreamCounters()
        self.matched = 0
        self.missed = 0
        self.unmatched = 0
        self.late = 0
        self._pending_truth: OrderedDict = OrderedDict()   # stamp -> (value, time)
        self._pending_pred: OrderedDict = OrderedDict()
        self._closed: OrderedDict = OrderedDict()          # stamp -> 'scored' | 'missed'

    def _close(self, stamp, how):
        self._closed[stamp] = how
        self._closed.move_to_end(stamp)
        while len(self._closed) > self._memory:
            self._closed.popitem(last=False)

    def add_truth(self, stamp: int, value, now: float = 0.0):
        self.truth.received += 1
        if stamp in self._pending_truth or stamp in self._closed:
            self.truth.duplicates += 1
            return None
        if stamp in self._pending_pred:
            pred, pred_time = self._pending_pred.pop(stamp)
            self.matched += 1
            self._close(stamp, 'scored')
            return stamp, value, pred, now, pred_time
        self._pending_truth[stamp] = (value, now)
        while len(self._pending_truth) > self.max_pending:
            old, _ = self._pending_truth.popitem(last=False)
            self.truth.evicted += 1
            self.missed += 1
            self._close(old, 'missed')
        return None

    def add_pred(self, stamp: int, value, now: float = 0.0):
        self.pred.received += 1
        state = self._closed.get(stamp)
        if stamp in self._pending_pred or state == 'scored':
            self.pred.duplicates += 1
            return None
        if state == 'missed':
            self.late += 1
            return None
        if stamp in self._pending_truth:
            truth, truth_time = self._pending_truth.pop(stamp)
            self.matched += 1
            self._close(stamp, 'scored')
            return stamp, truth, value, truth_time, now
        self._pending_pred[stamp] = (value, now)
        while len(self._pending_pred) > self.max_pending:
            self._pending_pred.popitem(last=False)
            self.pred.evicted += 1
            self.unmatched += 1
        return None

    def expire(self, now: float) -> list:
        """Close entries older than timeout_s; returns the stamps closed as missed."""
        if self.timeout_s is None:
            return []
        missed = []
        limit = now - self.timeout_s
        while self._pending_truth:
            stamp, (_, t) = next(iter(self._pending_truth.items()))
            if t > limit:
                break
            self._pending_truth.popitem(last=False)
            self.missed += 1
            self._close(stamp, 'missed')
            missed.append(stamp)
        while self._pending_pred:
            stamp, (_, t) = next(iter(self._pending_pred.items()))
            if t > limit:
                break
            self._pending_pred.popitem(last=False)
            self.unmatched += 1
        return missed

    def finalize(self) -> list:
        """Close everything pending (the end of the evaluation)."""
        missed = list(self._pending_truth)
        for stamp in missed:
            self._close(stamp, 'missed')
        self.missed += len(missed)
        self.unmatched += len(self._pending_pred)
        self._pending_truth.clear()
        self._pending_pred.clear()
        return missed

    @property
    def pending(self) -> tuple:
        return len(self._pending_truth), len(self._pending_pred)

    def counters(self) -> dict:
        return {'matched': self.matched, 'missed': self.missed, 'unmatched': self.unmatched,
                'late': self.late,
                'truth_received': self.truth.received, 'pred_received': self.pred.received,
                'truth_duplicates': self.truth.duplicates,
                'pred_duplicates': self.pred.duplicates,
                'duplicates': self.truth.duplicates + self.pred.duplicates,
                'truth_evicted': self.truth.evicted, 'pred_evicted': self.pred.evicted,
                'pending_truth': len(self._pending_truth),
                'pending_pred': len(self._pending_pred)}


# --------------------------------------------------------------------------- evaluator

@dataclass(order=True)
class _Ranked:
    badness: float
    seq: int
    info: dict = field(compare=False)


class _WorstK:
    """The k entries with the largest badness (min-heap of the kept ones)."""

    def __init__(self, k: int):
        self.k = int(k)
        self._heap: list = []
        self._seq = 0

    def would_keep(self, badness: float) -> bool:
        return self.k > 0 and (len(self._heap) < self.k or badness > self._heap[0].badness)

    def add(self, badness: float, info: dict) -> None:
        if not self.would_keep(badness):
            return
        self._seq += 1
        item = _Ranked(float(badness), self._seq, info)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, item)
        else:
            heapq.heapreplace(self._heap, item)

    def items(self) -> list:
        """Worst first."""
        return [r.info for r in sorted(self._heap, key=lambda r: (-r.badness, r.seq))]


class OnlineEvaluator:
    """Running centroid / hazard / segmentation figures from streamed predictions and truths.

    Thread-safe (one lock): the eval node may call it from several executor threads.
    Times (`now`) are seconds on one monotonic clock of the caller's choice.
    """

    def __init__(self, *, max_pending: int = 200, timeout_s: float | None = 10.0,
                 class_names=DEFAULT_CLASS_NAMES, worst_k: int = 6, samples: int = 12,
                 keep_thumbnails: bool = True, thumb_max_side: int = THUMB_MAX_SIDE,
                 max_thumbnails: int = 64, latency_window: int = 100000):
        self.class_names = list(class_names)
        self.n_classes = len(self.class_names)
        self.max_pending = int(max_pending)
        self.keep_thumbnails = keep_thumbnails
        self.max_thumbnails = max(1, int(max_thumbnails))
        self.thumb_max_side = int(thumb_max_side)
        self._lock = threading.RLock()
        self.centroid = PairMatcher(max_pending, timeout_s)
        self.hazard = PairMatcher(max_pending, timeout_s)
        self.segmentation = PairMatcher(max_pending, timeout_s)
        self.images = StreamCounters()
        self.shape_mismatch = {'hazard': 0, 'segmentation': 0}
        self.centroid_errors: list = []
        self.hazard_inter = 0
        self.hazard_union = 0
        self.hazard_frame_ious: list = []
        self.seg_cm = np.zeros((self.n_classes, self.n_classes), dtype=np.int64)
        self.latency = {'centroid': LatencyWindow(latency_window),
                        'hazard': LatencyWindow(latency_window),
                        'segmentation': LatencyWindow(latency_window)}
        self.answer_times = {'centroid': [], 'hazard': [], 'segmentation': []}  # first, last, n
        self._image_seen: OrderedDict = OrderedDict()   # stamp -> (time, thumb, scale, shape)
        self._seen_memory = 4096
        self._thumbs: deque = deque()
        self._worst = {'centroid': _WorstK(worst_k), 'hazard': _WorstK(worst_k)}
        self._samples = {'centroid': [], 'hazard': []}
        self._n_samples = int(samples)
        self.node_diagnostics: dict = {}   # node name -> {key: value} from /diagnostics

    # ------------------------------------------------------------------ inputs

    def add_image(self, stamp: int, image: np.ndarray | None, now: float,
                  shape=None) -> None:
        """A camera frame was seen (for latency, thumbnails and 'frames seen')."""
        with self._lock:
            self.images.received += 1
            if stamp in self._image_seen:
                self.images.duplicates += 1
                return
            thumb, scale = (None, 1.0)
            if image is not None and self.keep_thumbnails:
                thumb, scale = make_thumbnail(image, self.thumb_max_side)
            if shape is None and image is not None:
                shape = tuple(np.asarray(image).shape[:2])
            self._image_seen[stamp] = (now, thumb, scale, shape)
            # Pixels only for the newest frames (answers come within a few frames); older
            # entries keep their time for latency.
            self._thumbs.append(stamp)
            while len(self._thumbs) > self.max_thumbnails:
                old = self._thumbs.popleft()
                if old in self._image_seen:
                    t, _, sc, sh = self._image_seen[old]
                    self._image_seen[old] = (t, None, sc, sh)
            while len(self._image_seen) > self._seen_memory:
                self._image_seen.popitem(last=False)

    def _answer(self, task: str, stamp: int, now: float) -> None:
        seen = self._image_seen.get(stamp)
        if seen is not None:
            self.latency[task].add((now - seen[0]) * 1e3)
        times = self.answer_times[task]
        if not times:
            times.extend([now, now, 0])
        times[1] = now
        times[2] += 1

    def _thumb(self, stamp):
        seen = self._image_seen.get(stamp)
        if seen is None or seen[1] is None:
            return None, 1.0
        return seen[1], seen[2]

    def add_centroid_truth(self, stamp: int, xy, now: float) -> None:
        with self._lock:
            pair = self.centroid.add_truth(stamp, (float(xy[0]), float(xy[1])), now)
            if pair:
                self._score_centroid(*pair)

    def add_centroid_pred(self, stamp: int, xy, now: float) -> None:
        with self._lock:
            dup_before = self.centroid.pred.duplicates + self.centroid.late
            pair = self.centroid.add_pred(stamp, (float(xy[0]), float(xy[1])), now)
            if self.centroid.pred.duplicates + self.centroid.late == dup_before:
                self._answer('centroid', stamp, now)
            if pair:
                self._score_centroid(*pair)

    def _score_centroid(self, stamp, truth, pred, truth_time, pred_time):
        error = centroid_error(pred, truth)
        self.centroid_errors.append(error)
        thumb, scale = self._thumb(stamp)
        info = {'stamp_ns': int(stamp), 'error_px': error, 'truth': truth, 'pred': pred,
                'thumb': thumb, 'scale': scale}
        self._worst['centroid'].add(error, info)
        if len(self._samples['centroid']) < self._n_samples:
            self._samples['centroid'].append(info)

    def add_hazard_truth(self, stamp: int, mask: np.ndarray, now: float) -> None:
        with self._lock:
            pair = self.hazard.add_truth(stamp, np.array(mask, dtype=np.uint8), now)
            if pair:
                self._score_hazard(*pair)

    def add_hazard_pred(self, stamp: int, mask: np.ndarray, now: float) -> None:
        with self._lock:
            dup_before = self.hazard.pred.duplicates + self.hazard.late
            pair = self.hazard.add_pred(stamp, np.array(mask, dtype=np.uint8), now)
            if self.hazard.pred.duplicates + self.hazard.late == dup_before:
                self._answer('hazard', stamp, now)
            if pair:
                self._score_hazard(*pair)

    def _fit(self, task, pred, truth):
        if pred.shape[:2] != truth.shape[:2]:
            self.shape_mismatch[task] += 1
            pred = resize_nearest(pred, truth.shape)
        return pred

    def _score_hazard(self, stamp, truth, pred, truth_time, pred_time):
        pred = self._fit('hazard', pred, truth)
        inter, union = binary_iou_counts(pred, truth)
        self.hazard_inter += inter
        self.hazard_union += union
        iou = iou_from_counts(inter, union)
        self.hazard_frame_ious.append(iou)
        thumb, scale = self._thumb(stamp)
        if self._worst['hazard'].would_keep(1.0 - iou) or \
                len(self._samples['hazard']) < self._n_samples:
            info = {'stamp_ns': int(stamp), 'iou': iou, 'thumb': thumb, 'scale': scale,
                    'truth': _small_mask(truth, thumb), 'pred': _small_mask(pred, thumb)}
            self._worst['hazard'].add(1.0 - iou, info)
            if len(self._samples['hazard']) < self._n_samples:
                self._samples['hazard'].append(info)

    def add_segmentation_truth(self, stamp: int, classes: np.ndarray, now: float) -> None:
        with self._lock:
            pair = self.segmentation.add_truth(stamp, np.array(classes, dtype=np.uint8), now)
            if pair:
                self._score_segmentation(*pair)

    def add_segmentation_pred(self, stamp: int, classes: np.ndarray, now: float) -> None:
        with self._lock:
            dup_before = self.segmentation.pred.duplicates + self.segmentation.late
            pair = self.segmentation.add_pred(stamp, np.array(classes, dtype=np.uint8), now)
            if self.segmentation.pred.duplicates + self.segmentation.late == dup_before:
                self._answer('segmentation', stamp, now)
            if pair:
                self._score_segmentation(*pair)

    def _score_segmentation(self, stamp, truth, pred, truth_time, pred_time):
        pred = self._fit('segmentation', pred, truth)
        self.seg_cm += confusion(pred, truth, self.n_classes)

    def add_node_diagnostics(self, name: str, values: dict) -> None:
        with self._lock:
            self.node_diagnostics[name] = dict(values)

    def expire(self, now: float) -> None:
        with self._lock:
            for matcher in (self.centroid, self.hazard, self.segmentation):
                matcher.expire(now)

    def finalize(self) -> None:
        with self._lock:
            for matcher in (self.centroid, self.hazard, self.segmentation):
                matcher.finalize()

    # ------------------------------------------------------------------ outputs

    def summary(self) -> dict:
        """All running figures as plain JSON-able values (NaN where undefined)."""
        with self._lock:
            out = {'frames_seen': self.images.received - self.images.duplicates,
                   'image_duplicates': self.images.duplicates}
            c = self.centroid.counters()
            c.update({f'error_px_{k}' if k != 'n' else 'n_scored': v
                      for k, v in summarize_errors(self.centroid_errors).items()})
            out['centroid'] = c
            h = self.hazard.counters()
            h['iou_pooled'] = (iou_from_counts(self.hazard_inter, self.hazard_union)
                               if self.hazard.matched else float('nan'))
            h['iou_mean_per_frame'] = (float(np.mean(self.hazard_frame_ious))
                                       if self.hazard_frame_ious else float('nan'))
            h['shape_mismatch'] = self.shape_mismatch['hazard']
            out['hazard'] = h
            s = self.segmentation.counters()
            ious = per_class_iou(self.seg_cm) if self.segmentation.matched else \
                [float('nan')] * self.n_classes
            s['miou'] = mean_iou(ious)
            s['per_class_iou'] = dict(zip(self.class_names, ious))
            total = int(self.seg_cm.sum())
            s['pixel_accuracy'] = (float(np.trace(self.seg_cm)) / total) if total else \
                float('nan')
            s['confusion'] = self.seg_cm.tolist()
            s['shape_mismatch'] = self.shape_mismatch['segmentation']
            out['segmentation'] = s
            lat = {}
            for task, window in self.latency.items():
                times = self.answer_times[task]
                rate = ((times[2] - 1) / (times[1] - times[0])
                        if times and times[2] > 1 and times[1] > times[0] else float('nan'))
                lat[task] = {'n': window.count, 'p50_ms': window.percentile(50),
                             'p95_ms': window.percentile(95), 'mean_ms': window.mean(),
                             'answers': times[2] if times else 0, 'answers_per_s': rate}
            out['latency'] = lat
            out['latency_definition'] = ('receipt of the answer at the evaluator - receipt of '
                                         'the same-stamp image at the evaluator')
            out['node_diagnostics'] = dict(self.node_diagnostics)
            return out

    def worst(self, task: str) -> list:
        with self._lock:
            return self._worst[task].items()

    def samples(self, task: str) -> list:
        with self._lock:
            return list(self._samples[task])


def _small_mask(mask: np.ndarray, thumb) -> np.ndarray:
    if thumb is None:
        h, w = mask.shape[:2]
        scale = min(1.0, THUMB_MAX_SIDE / float(max(h, w)))
        shape = (max(1, round(h * scale)), max(1, round(w * scale)))
    else:
        shape = thumb.shape[:2]
    return resize_nearest(mask, shape)


# --------------------------------------------------------------------------- report + pictures

def _jsonable(value):
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


def write_report(evaluator: OnlineEvaluator, path, extra: dict | None = None) -> Path:
    """JSON report (NaN -> null), written atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = evaluator.summary()
    data['worst'] = {
        'centroid': [{'stamp_ns': w['stamp_ns'], 'error_px': w['error_px'],
                      'truth': list(w['truth']), 'pred': list(w['pred'])}
                     for w in evaluator.worst('centroid')],
        'hazard': [{'stamp_ns': w['stamp_ns'], 'iou': w['iou']}
                   for w in evaluator.worst('hazard')]}
    if extra:
        data.update(extra)
    tmp = path.with_suffix(path.suffix + '.tmp')
    tmp.write_text(json.dumps(_jsonable(data), indent=2, sort_keys=False))
    tmp.replace(path)
    return path


def _draw_cross(img, x, y, colour, size):
    import cv2
    cv2.drawMarker(img, (int(round(x)), int(round(y))), colour, cv2.MARKER_CROSS, size,
                   max(1, size // 6), cv2.LINE_AA)


def centroid_tile(info: dict, tile: int = 200) -> np.ndarray:
    """Thumbnail with truth (green) and prediction (red) crosses, error in the corner."""
    import cv2
    thumb, scale = info.get('thumb'), info.get('scale', 1.0)
    if thumb is None:
        img = np.zeros((tile, tile, 3), np.uint8)
        scale_to = 1.0
        ox = oy = 0.0
        tx, ty = info['truth']
        # Without the image: centre the truth, draw the error vector at 1 px = 1 px.
        ox, oy = tile / 2 - tx, tile / 2 - ty
    else:
        img = thumb.copy()
        scale_to = 1.0
        ox = oy = 0.0
        h, w = img.shape[:2]
        if max(h, w) != tile:
            scale_to = tile / float(max(h, w))
            img = cv2.resize(img, (max(1, round(w * scale_to)), max(1, round(h * scale_to))),
                             interpolation=cv2.INTER_AREA)
    s = scale * scale_to if thumb is not None else 1.0

    def to_img(xy):
        x, y = xy
        return (x + 0.5) * s - 0.5 + ox, (y + 0.5) * s - 0.5 + oy

    size = max(7, img.shape[0] // 12)
    _draw_cross(img, *to_img(info['truth']), (0, 255, 0), size)
    _draw_cross(img, *to_img(info['pred']), (255, 0, 0), size)
    cv2.putText(img, f"{info['error_px']:.1f}px", (3, img.shape[0] - 5),
                cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
    return img


def hazard_tile(info: dict) -> np.ndarray:
    """Image with truth hazard outlined in green and predicted hazard filled red, IoU."""
    import cv2
    truth, pred = info['truth'], info['pred']
    thumb = info.get('thumb')
    img = (thumb.copy() if thumb is not None
           else np.full(truth.shape[:2] + (3,), 64, np.uint8))
    if img.shape[:2] != truth.shape[:2]:
        img = cv2.resize(img, (truth.shape[1], truth.shape[0]), interpolation=cv2.INTER_AREA)
    red = pred != 0
    img[red] = (0.5 * img[red] + 0.5 * np.array([255, 0, 0])).astype(np.uint8)
    contours, _ = cv2.findContours((truth != 0).astype(np.uint8), cv2.RETR_LIST,
                                   cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(img, contours, -1, (0, 255, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"IoU {info['iou']:.2f}", (3, img.shape[0] - 5),
                cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
    return img


def contact_sheet(tiles, columns: int = 4, pad: int = 4) -> np.ndarray | None:
    """Tiles (RGB uint8) on a grid, each cell the size of the largest tile."""
    tiles = [t for t in tiles if t is not None]
    if not tiles:
        return None
    ch = max(t.shape[0] for t in tiles)
    cw = max(t.shape[1] for t in tiles)
    columns = max(1, min(columns, len(tiles)))
    rows = (len(tiles) + columns - 1) // columns
    sheet = np.full((rows * (ch + pad) + pad, columns * (cw + pad) + pad, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        y, x = pad + r * (ch + pad), pad + c * (cw + pad)
        sheet[y:y + t.shape[0], x:x + t.shape[1]] = t
    return sheet


def _save_rgb(path: Path, rgb: np.ndarray) -> Path:
    import cv2
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f'cannot write {path}')
    return path


def error_histogram(errors, path, title: str = 'centroid error') -> Path:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    errors = np.asarray(errors, dtype=np.float64)
    stats = summarize_errors(errors)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if errors.size:
        ax.hist(errors, bins=min(40, max(5, errors.size // 2)), color='tab:blue', alpha=0.8)
        for key, style in (('mean', '-'), ('median', '--'), ('p95', ':')):
            ax.axvline(stats[key], color='k', linestyle=style,
                       label=f'{key} {stats[key]:.2f} px')
        ax.legend()
    else:
        ax.text(0.5, 0.5, 'no matched frames', ha='center', va='center',
                transform=ax.transAxes)
    ax.set_xlabel('centroid error [px]')
    ax.set_ylabel('frames')
    ax.set_title(f'{title} (n = {stats["n"]})')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_pictures(evaluator: OnlineEvaluator, out_dir) -> dict:
    """Pictures of what the evaluator saw; returns {name: path} of the files written.

    centroid_contact_sheet.png  first frames, prediction red, truth green
    centroid_worst.png          worst frames by error
    centroid_error_hist.png     error histogram with mean / median / p95
    hazard_overlays.png         first frames: predicted hazard red, truth outline green
    hazard_worst.png            worst frames by hazard IoU
    """
    out_dir = Path(out_dir)
    written = {}
    if evaluator.centroid.matched:
        sheet = contact_sheet([centroid_tile(i) for i in evaluator.samples('centroid')])
        if sheet is not None:
            written['centroid_contact_sheet'] = _save_rgb(
                out_dir / 'centroid_contact_sheet.png', sheet)
        sheet = contact_sheet([centroid_tile(i) for i in evaluator.worst('centroid')], 3)
        if sheet is not None:
            written['centroid_worst'] = _save_rgb(out_dir / 'centroid_worst.png', sheet)
        written['centroid_error_hist'] = error_histogram(
            evaluator.centroid_errors, out_dir / 'centroid_error_hist.png')
    if evaluator.hazard.matched:
        sheet = contact_sheet([hazard_tile(i) for i in evaluator.samples('hazard')], 4)
        if sheet is not None:
            written['hazard_overlays'] = _save_rgb(out_dir / 'hazard_overlays.png', sheet)
        sheet = contact_sheet([hazard_tile(i) for i in evaluator.worst('hazard')], 3)
        if sheet is not None:
            written['hazard_worst'] = _save_rgb(out_dir / 'hazard_worst.png', sheet)
    return written
