"""Centroid task for the shared trainer: asteroid images + centre-of-mass labels.

Data: the thesis layout (DIR/images/*.png, DIR/labels.csv in full-resolution pixels; see
DEVELOPERS.md), read once, resized to the model input with cv2.INTER_AREA and kept in memory
as uint8.  Two architectures:

- ``centroidnet`` (default): output (u, v, in-view logit) over the image extent.  Loss:
  Smooth-L1 on (u, v) scaled to pixels of a 1024-px frame for in-view samples + BCE on the
  in-view logit.  Training adds synthetic no-target frames (dark / noise / stars / hot pixels,
  labelled not-in-view) and label-exact augmentations (D4 flips/transposes, integer shifts that
  keep the lit body in frame, gain, gamma, noise; ``photometric='wide'`` also blur and a
  black-level offset, over ranges wide enough to cover another camera's exposure; the default
  stays 'narrow', the shipped model's recipe: 'wide' did not make it more robust, session 8 in
  docs/RESULTS_MODELS.md).  AdamW + warm-up/cosine schedule.
  Where the data set has DIR/silhouettes/ (the renderer writes them), the network's weight map
  is also pulled toward a uniform weight over the body's whole silhouette (KL divergence, weight
  ``shape_weight``), for frames whose silhouette does not touch the frame edge: a dense target
  that teaches the network to fill in the unlit side, whose mean is the centre of volume.
- ``thesis``: the thesis recipe unchanged: 128x128 input, labels scaled by resize/orig
  (model-input pixels), MSE loss, Adam 1e-4 constant, batch 32, no augmentation.

Validation error is reported in full-resolution pixels of the validation set's own frames.
"""
import math
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from . import plots
from .data_roots import describe, load_roots
from .trainer import adamw_one_cycle
from ..core import zoom_refine as zoom
from ..data.asteroid_dataset import read_image, read_index, to_unit_float
from ..data.augment import PHOTOMETRIC_MODES
from ..data.problems import DataProblems, UnusableDataset

ARCHS = ('centroidnet', 'thesis')
LOSS_PX_SCALE = 1024.0          # (u, v) errors are scaled to pixels of a 1024-px frame
DEFAULT_SHAPE_WEIGHT = 20.0     # weight of the silhouette KL term (centroidnet)
# 'narrow': the ranges every model up to session 7 was trained with (kept to reproduce them);
# 'wide': exposure from a third to about three times nominal (bright bodies clip, as they do in
# an overexposed frame), gamma 0.55-1.8, noise up to 3 % of full scale, a point-spread blur and
# a black-level offset (the shipped model loses up to 2x its p95 error under such changes, but a
# run with these ranges was no more robust: session 8).
DEFAULT_PHOTOMETRIC = 'narrow'
# zoom crops (CentroidDataset): crop side / lit extent, drawn uniformly around the shipped
# 2.25, and the first-pass error the crop centre gets (normal, in lit extents, cut at 3 sigma)
ZOOM_FACTORS = (1.8, 2.8)
ZOOM_CENTRE_SIGMA = 0.02


def arch_defaults(arch: str) -> dict:
    if arch == 'thesis':
        return {'input_size': 128, 'epochs': 20, 'batch_size': 32, 'lr': 1e-4,
                'weight_decay': 0.0}
    return {'input_size': 256, 'epochs': 30, 'batch_size': 32, 'lr': 2e-3,
            'weight_decay': 1e-4}


def build_model(arch: str, input_size: int = None):
    if arch == 'thesis':
        from ..nets.thesis_cnn import ThesisCNN
        return ThesisCNN()
    if arch == 'centroidnet':
        from ..nets.centroid_net import CentroidNet
        return CentroidNet()
    raise ValueError(f'unknown centroid arch {arch!r} (known: {", ".join(ARCHS)})')


def read_dataset(root, limit: int = 0) -> list:
    """Records of a thesis-layout dataset through the project loader (data/asteroid_dataset.py):
    missing images, malformed rows and labels outside the image are skipped and summarised."""
    records, problems = read_index(root)
    if problems:
        print(problems.summary(limit=20))
    return records[:limit] if limit else records


def load_centroid_set(root, size: int, desc: str = 'load', limit: int = 0,
                      keep_full: bool = False):
    """Images resized to size x size (uint8), labels as (u, v) over the extent, orig (W, H),
    in-view flags, names and silhouettes (size x size uint8 occupancy 0..255, area-resized from
    DIR/silhouettes/NAME; None when the data set has none for that image); unreadable images
    are skipped. With `keep_full`, a seventh item: per image (frame as 8-bit, silhouette as
    0/1 uint8 or None) at the frame's own resolution, for zoom crops."""
    root = Path(root)
    records = read_dataset(root, limit)
    problems = DataProblems(source=str(root))
    imgs, uv, wh, inview, names, sils, full = [], [], [], [], [], [], []
    sil_dir = root / 'silhouettes'
    for rec in tqdm(records, desc=f'{desc} {root.name}', leave=False):
        img = read_image(rec.path, problems)
        if img is None:
            continue
        name, x, y, m = rec.name, rec.x, rec.y, rec.meta
        h, w = img.shape
        unit = to_unit_float(img)
        small = cv2.resize(unit, (size, size), interpolation=cv2.INTER_AREA)
        imgs.append(np.clip(np.rint(small * 255.0), 0, 255).astype(np.uint8))
        sil = raw_sil = None
        if sil_dir.is_dir() and (sil_dir / name).is_file():
            raw = cv2.imread(str(sil_dir / name), cv2.IMREAD_GRAYSCALE)
            if raw is not None and raw.shape == img.shape:
                raw_sil = (raw > 127).astype(np.uint8)
                sil = cv2.resize(raw_sil.astype(np.float32), (size, size),
                                 interpolation=cv2.INTER_AREA)
                sil = np.clip(np.rint(sil * 255.0), 0, 255).astype(np.uint8)
        sils.append(sil)
        if keep_full:
            frame8 = img if img.dtype == np.uint8 else \
                np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)
            full.append((frame8, raw_sil))
        vis = True
        if str(m.get('in_view', '1')).strip().lower() in ('0', '0.0', 'false', 'no'):
            vis = False
        uv.append(((x + 0.5) / w, (y + 0.5) / h) if vis else (0.5, 0.5))
        wh.append((w, h))
        inview.append(vis)
        names.append(name)
    if problems:
        print(problems.summary(limit=20))
    if not imgs:
        raise UnusableDataset(f'{root}: no usable images (expected images/*.png and labels.csv)')
    out = (np.stack(imgs), np.asarray(uv, np.float32), np.asarray(wh, np.float32),
           np.asarray(inview, bool), names, sils)
    return out + (full,) if keep_full else out


def synth_no_target(size: int, rng: np.random.Generator) -> np.ndarray:
    """A frame without the body: dark sensor noise, stars and hot pixels."""
    img = rng.normal(rng.uniform(0, 0.03), rng.uniform(0, 0.02), (size, size)).astype(np.float32)
    for _ in range(int(rng.integers(0, 40))):
        y, x = rng.integers(0, size, 2)
        img[y, x] += rng.uniform(0.05, 1.0)
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.3, 1.0))
    if rng.random() < 0.15:   # a stray-light gradient
        ramp = np.linspace(0, rng.uniform(0.02, 0.15), size, dtype=np.float32)
        img += ramp[None, :] if rng.random() < 0.5 else ramp[:, None]
    return np.clip(img, 0, 1)


class CentroidDataset(Dataset):
    """Training / validation frames of the centroid task.

    `zoom_crops` (training, centroidnet): the fraction of in-view frames shown as the node's
    second pass sees them (core/zoom_refine.py): a square crop of the frame at its own
    resolution, `ZOOM_FACTORS` times the lit extent wide (measured on the model-input image, as
    the node does), centred on the label moved by a first-pass-like error, resized to the input
    with the runtime's INTER_AREA. Frames the node would not refine (cut by the edge, dark,
    crop not smaller than the frame) stay whole. Labels and silhouettes follow the crop exactly.
    """

    def __init__(self, root, arch: str, size: int, train: bool, p_empty: float = 0.1,
                 seed: int = 0, limit: int = 0, photometric: str = DEFAULT_PHOTOMETRIC,
                 zoom_crops: float = 0.0):
        if photometric not in PHOTOMETRIC_MODES:
            raise ValueError(f'unknown photometric mode {photometric!r} '
                             f'(known: {", ".join(PHOTOMETRIC_MODES)})')
        if not 0.0 <= zoom_crops <= 1.0:
            raise ValueError(f'zoom_crops must be in [0, 1], got {zoom_crops}')
        self.arch, self.size, self.train = arch, size, train
        self.photometric = photometric
        self.augment = train and arch != 'thesis'
        self.zoom_crops = zoom_crops if self.augment else 0.0
        loaded = load_roots(load_centroid_set, root, size, 'train' if train else 'val', limit,
                            keep_full=self.zoom_crops > 0)
        self.images, self.uv, self.wh, self.inview, self.names, self.sils = loaded[:6]
        self.full = loaded[6] if self.zoom_crops > 0 else None
        self.n_silhouettes = sum(m is not None for m in self.sils)
        self.p_empty = p_empty if self.augment else 0.0
        self.seed, self.epoch = seed, 0
        # extent of the lit body per image (for shifts that keep it in frame)
        self.bbox = np.array([_bbox(im) for im in self.images], np.int32)
        # the node's zoom-refine extent (frame px) per image; 0 where it would not refine
        self.zoom_extent = np.zeros(len(self.images), np.float32)
        if self.full is not None:
            for i, im in enumerate(self.images):
                if self.inview[i]:
                    w, h = self.wh[i]
                    self.zoom_extent[i] = zoom.frame_extent(im.astype(np.float32) / 255.0,
                                                            w, h) or 0.0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, self.epoch, i, torch.initial_seed() % 2 ** 31])
        s = self.size
        img = self.images[i].astype(np.float32) / 255.0
        u, v = (float(a) for a in self.uv[i])
        vis = bool(self.inview[i])
        sil = self.sils[i]
        has_sil = sil is not None
        sil = sil.astype(np.float32) / 255.0 if has_sil else np.zeros((s, s), np.float32)
        if self.augment:
            bbox = self.bbox[i]
            if rng.random() < self.p_empty:
                img, u, v, vis = synth_no_target(s, rng), 0.5, 0.5, False
                sil, has_sil = np.zeros((s, s), np.float32), False
            else:
                if self.zoom_extent[i] > 0 and rng.random() < self.zoom_crops:
                    zoomed = self._zoom_crop(i, rng)
                    if zoomed is not None:
                        img, sil, u, v = zoomed
                        bbox = _bbox(np.rint(img * 255.0))
                img, sil, u, v = self._geometric(img, sil, u, v, bbox, rng)
                img = (self._photometric_wide(img, rng) if self.photometric == 'wide'
                       else self._photometric(img, rng))
        if self.arch == 'thesis':
            # thesis label scaling: full-res px * resize / orig
            target = torch.tensor([(u * self.wh[i, 0] - 0.5) * s / self.wh[i, 0],
                                   (v * self.wh[i, 1] - 0.5) * s / self.wh[i, 1]],
                                  dtype=torch.float32)
        else:
            target = torch.tensor([u, v], dtype=torch.float32)
        return {'image': torch.from_numpy(np.ascontiguousarray(img))[None],
                'target': target, 'uv': torch.tensor([u, v], dtype=torch.float32),
                'in_view': torch.tensor(float(vis)),
                'silhouette': torch.from_numpy(np.ascontiguousarray(sil))[None],
                'has_silhouette': torch.tensor(float(has_sil)),
                'orig_wh': torch.from_numpy(self.wh[i].copy())}

    def _zoom_crop(self, i, rng):
        """(image, silhouette, u, v) of a second-pass view of frame i, or None when the node
        would not make one (see the class doc)."""
        frame, full_sil = self.full[i]
        height, width = frame.shape
        x = float(self.uv[i, 0]) * width - 0.5
        y = float(self.uv[i, 1]) * height - 0.5
        extent = float(self.zoom_extent[i])
        dx, dy = np.clip(rng.normal(0.0, ZOOM_CENTRE_SIGMA, 2), -3 * ZOOM_CENTRE_SIGMA,
                         3 * ZOOM_CENTRE_SIGMA) * extent
        window = zoom.crop_window(x + dx, y + dy, extent, rng.uniform(*ZOOM_FACTORS),
                                  width, height)
        if window is None:
            return None
        x0, y0, side = window
        s = self.size
        crop = cv2.resize(np.ascontiguousarray(frame[y0:y0 + side, x0:x0 + side]), (s, s),
                          interpolation=cv2.INTER_AREA)
        sil = np.zeros((s, s), np.float32)
        if full_sil is not None:
            sil = cv2.resize(full_sil[y0:y0 + side, x0:x0 + side].astype(np.float32), (s, s),
                             interpolation=cv2.INTER_AREA)
        return (crop.astype(np.float32) / 255.0, sil,
                (x - x0 + 0.5) / side, (y - y0 + 0.5) / side)

    def _geometric(self, img, sil, u, v, bbox, rng):
        """Label-exact D4 flips/transposes and integer shifts, applied alike to the image and
        its silhouette (moved together as one (H, W, 2) array); `bbox` = the lit pixels'
        (x0, y0, x1, y1)."""
        both = np.stack([img, sil], axis=-1)
        x0, y0, x1, y1 = bbox
        if rng.random() < 0.5:
            both, u = both[:, ::-1], 1.0 - u
            x0, x1 = self.size - 1 - x1, self.size - 1 - x0
        if rng.random() < 0.5:
            both, v = both[::-1, :], 1.0 - v
            y0, y1 = self.size - 1 - y1, self.size - 1 - y0
        if rng.random() < 0.5:
            both, u, v = both.swapaxes(0, 1), v, u
            x0, y0, x1, y1 = y0, x0, y1, x1
        if rng.random() < 0.7 and x1 >= x0:
            # only along axes where the lit pixels do not touch the frame edge (a body cut by
            # the edge must stay cut there)
            dx = int(rng.integers(-x0, self.size - x1)) if 0 < x0 and x1 < self.size - 1 else 0
            dy = int(rng.integers(-y0, self.size - y1)) if 0 < y0 and y1 < self.size - 1 else 0
            both = _shift(both, dx, dy)
            u += dx / self.size
            v += dy / self.size
        return np.ascontiguousarray(both[..., 0]), np.ascontiguousarray(both[..., 1]), u, v

    @staticmethod
    def _photometric(img, rng):
        img = img * rng.uniform(0.6, 1.4)
        if rng.random() < 0.5:
            img = np.power(np.clip(img, 0, 1), rng.uniform(0.7, 1.4))
        if rng.random() < 0.5:
            img = img + rng.normal(0, rng.uniform(0.002, 0.02), img.shape)
        return np.clip(img, 0, 1).astype(np.float32)

    @staticmethod
    def _photometric_wide(img, rng):
        img = img * math.exp(rng.uniform(math.log(0.35), math.log(2.8)))
        if rng.random() < 0.5:
            img = np.power(np.clip(img, 0, 1), rng.uniform(0.55, 1.8))
        if rng.random() < 0.25:
            img = cv2.GaussianBlur(np.clip(img, 0, 1).astype(np.float32), (0, 0),
                                   rng.uniform(0.3, 1.2))
        if rng.random() < 0.3:
            img = img + rng.uniform(0.0, 0.06)
        if rng.random() < 0.5:
            img = img + rng.normal(0, rng.uniform(0.002, 0.03), img.shape)
        return np.clip(img, 0, 1).astype(np.float32)


def _bbox(img: np.ndarray):
    mask = img > 12
    if not mask.any():
        return (1, 1, 0, 0)   # x1 < x0: no shift
    ys, xs = np.nonzero(mask)
    return (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))


def _shift(img, dx: int, dy: int):
    out = np.zeros_like(img)
    h, w = img.shape[:2]
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        img[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def shape_kl(log_w: torch.Tensor, silhouette: torch.Tensor, use: torch.Tensor) -> torch.Tensor:
    """Mean KL(t || w) over the samples where `use` > 0 and the silhouette does not reach the
    frame edge (no border pixel of the model input half covered or more: the in-frame part of a
    cut body has another centre); t = the silhouette (N, 1, S, S) area-pooled to the weight
    map's grid and normalised, log_w = (N, h*w) log-weights (h = w = sqrt of their count)."""
    n, hw = log_w.shape
    h = int(round(math.sqrt(hw)))
    t = F.adaptive_avg_pool2d(silhouette, [h, h]).reshape(n, hw)
    total = t.sum(1)
    edge = torch.cat([silhouette[:, 0, 0], silhouette[:, 0, -1],
                      silhouette[:, 0, :, 0], silhouette[:, 0, :, -1]], dim=1).amax(1)
    ok = (use > 0) & (edge < 0.5) & (total > 0)
    if not bool(ok.any()):
        return log_w.sum() * 0.0
    t = t[ok] / total[ok, None]
    kl = (t * (torch.log(t.clamp_min(1e-12)) - log_w[ok])).sum(1)
    return kl.mean()


class CentroidTask:
    name = 'centroid'
    metric_name = 'val_median_px'
    metric_mode = 'min'

    def __init__(self, data, val, arch: str = 'centroidnet', input_size: int = None,
                 seed: int = 0, p_empty: float = 0.1, limit: int = 0,
                 shape_weight: float = DEFAULT_SHAPE_WEIGHT,
                 photometric: str = DEFAULT_PHOTOMETRIC, zoom_crops: float = 0.0):
        if arch not in ARCHS:
            raise ValueError(f'unknown centroid arch {arch!r} (known: {", ".join(ARCHS)})')
        self.data, self.val, self.arch = data, val, arch
        self.input_size = input_size or arch_defaults(arch)['input_size']
        self.seed, self.p_empty, self.limit = seed, p_empty, limit
        self.shape_weight = float(shape_weight) if arch == 'centroidnet' else 0.0
        self.photometric = photometric
        if not 0.0 <= zoom_crops <= 1.0:
            raise ValueError(f'zoom_crops must be in [0, 1], got {zoom_crops}')
        if zoom_crops and arch == 'thesis':
            raise ValueError('zoom crops are a centroidnet option: the thesis recipe trains on '
                             'whole frames only')
        self.zoom_crops = float(zoom_crops)
        self.n_train = 0
        self.n_silhouettes = 0

    def build_model(self):
        model = build_model(self.arch, self.input_size)
        if self.shape_weight > 0:
            model.with_map = True
        return model

    def datasets(self):
        tr = CentroidDataset(self.data, self.arch, self.input_size, True, self.p_empty,
                             self.seed, self.limit, self.photometric, self.zoom_crops)
        va = CentroidDataset(self.val, self.arch, self.input_size, False, limit=self.limit)
        self.n_train, self.n_val = len(tr), len(va)
        self.n_silhouettes = tr.n_silhouettes
        if self.shape_weight > 0 and not tr.n_silhouettes:
            print(f'note: {describe(self.data)} has no silhouettes/ (render with a current `spacenav synth '
                  'asteroid`): training without the shape term')
        return tr, va

    def config(self) -> dict:
        s = self.input_size
        return {'input': {'height': s, 'width': s, 'channels': 1, 'resize': 'area',
                          'mean': [0.0], 'std': [1.0]},
                'output': 'xy_input_px' if self.arch == 'thesis' else 'xy_norm_logit',
                'class_names': [], 'data': describe(self.data), 'val': str(self.val),
                'n_train': self.n_train, 'n_val': getattr(self, 'n_val', 0),
                'loss': 'mse (input px)' if self.arch == 'thesis' else
                        'smooth-l1 (px of 1024-px frame) + bce(in-view)'
                        + (f' + {self.shape_weight:g} * KL(silhouette || weight map)'
                           if self.shape_weight > 0 else ''),
                'n_train_silhouettes': self.n_silhouettes,
                'p_empty': 0.0 if self.arch == 'thesis' else self.p_empty,
                'photometric': None if self.arch == 'thesis' else self.photometric,
                'zoom_crops': self.zoom_crops}

    def optimizer(self, model, cfg):
        if self.arch == 'thesis':
            return torch.optim.Adam(model.parameters(), lr=cfg.lr), None
        return adamw_one_cycle(model, cfg, self.n_train, final_div_factor=200)

    def loss(self, outputs, batch):
        if self.arch == 'thesis':
            loss = F.mse_loss(outputs, batch['target'])
            return loss, {'mse': float(loss.detach())}
        vis = batch['in_view']
        err = (outputs[:, :2] - batch['target']) * LOSS_PX_SCALE
        per = F.smooth_l1_loss(err, torch.zeros_like(err), reduction='none', beta=1.0).sum(1)
        reg = (per * vis).sum() / vis.sum().clamp(min=1.0)
        cls = F.binary_cross_entropy_with_logits(outputs[:, 2], vis)
        parts = {'reg': float(reg.detach()), 'bce': float(cls.detach())}
        loss = reg + cls
        if outputs.shape[1] > 3 and self.shape_weight > 0 and 'silhouette' in batch:
            kl = shape_kl(outputs[:, 3:], batch['silhouette'],
                          batch['has_silhouette'] * vis)
            loss = loss + self.shape_weight * kl
            parts['shape_kl'] = float(kl.detach())
        return loss, parts

    # -- validation ---------------------------------------------------------------------
    def full_res_xy(self, outputs, batch):
        wh = batch['orig_wh']
        if self.arch == 'thesis':
            return outputs[:, :2] * wh / self.input_size        # thesis scaling
        return outputs[:, :2] * wh - 0.5

    def val_begin(self):
        self._err, self._tp, self._n_vis, self._fp, self._n_empty = [], 0, 0, 0, 0

    def val_step(self, outputs, batch):
        xy = self.full_res_xy(outputs, batch)
        truth = batch['uv'] * batch['orig_wh'] - 0.5
        vis = batch['in_view'] > 0.5
        err = torch.linalg.norm(xy - truth, dim=1)
        self._err.extend(err[vis].tolist())
        if self.arch != 'thesis':
            says = outputs[:, 2] > 0
            self._tp += int((says & vis).sum())
            self._fp += int((says & ~vis).sum())
        else:
            self._tp += int(vis.sum())
        self._n_vis += int(vis.sum())
        self._n_empty += int((~vis).sum())

    def val_end(self):
        e = np.asarray(self._err, np.float64)
        if not len(e):
            return {'val_median_px': math.nan}
        return {'val_mean_px': float(e.mean()), 'val_median_px': float(np.median(e)),
                'val_p95_px': float(np.percentile(e, 95)),
                'val_detect_rate': self._tp / max(1, self._n_vis)}

    def save_overlay(self, outputs, batch, path):
        n = min(8, len(outputs))
        s = self.input_size
        imgs = batch['image'][:n, 0].numpy()
        wh = batch['orig_wh'][:n].numpy()
        pred = self.full_res_xy(outputs[:n], {'orig_wh': batch['orig_wh'][:n]}).numpy()
        truth = (batch['uv'][:n] * batch['orig_wh'][:n] - 0.5).numpy()
        to_disp = lambda xy: (xy + 0.5) * s / wh - 0.5   # full-res px -> displayed input px
        err = np.linalg.norm(pred - truth, axis=1)
        plots.centroid_overlay(imgs, to_disp(pred), to_disp(truth), path,
                               titles=[f'err {e:.2f} px' for e in err])
