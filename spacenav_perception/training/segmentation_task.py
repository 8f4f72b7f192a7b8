"""Segmentation task for the shared trainer: lunar renders + class masks (Kaggle layout).

Images (DIR/images/render/renderNNNN.png) are resized to the model input with INTER_AREA and
masks (DIR/images/clean/cleanNNNN.png or ground/groundNNNN.png) are decoded to class ids
(dominant channel, DEVELOPERS.md) and resized with nearest neighbour; both stay in memory.

- ``hazardnet``: cross-entropy + soft Dice (the Dice term keeps the rare rock classes from
  being ignored; ``region_loss_name='lovasz'`` puts the Lovasz-softmax IoU surrogate in its
  place, training/segmentation_losses.py), AdamW + warm-up/cosine, flips and photometric
  jitter (gain, offset, gamma, noise; ``photometric='wide'``, the default, adds a point-spread
  blur; 'narrow' is what every model up to session 7 was trained with). ``hazardnet_sp``
  (default, shipped): the same with per-pixel logits from a stride-2 sub-pixel head;
  ``hazardnet_fr``: the same with logits drawn at the input's resolution (nets/hazard_net.py).
- ``unet``: the report's custom U-Net: cross-entropy, Adam 1e-3 constant, same data.

``color='luma'`` (``--color luma``): every frame is reduced to BT.601 luma (before the resize,
as core/preprocess does at run time) and replicated to the three input channels; the manifest
says so and the runtime does the same, so a colour cast cannot change the prediction.

Validation: a confusion matrix accumulated over the set at model-input resolution -> per-class
IoU, mIoU (best checkpoint), pixel accuracy.
"""
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
from ..core.lunar_classes import CLASS_NAMES as LUNAR_CLASS_NAMES, NUM_CLASSES
from ..core.manifest import COLOR_MODES
from ..data.augment import PHOTOMETRIC_MODES
from ..data.lunar_dataset import classify_mask, find_samples, read_rgb
from ..data.problems import DataProblems, UnusableDataset
from .segmentation_losses import DEFAULT_REGION_LOSS, REGION_LOSSES, region_loss

ARCHS = ('hazardnet', 'hazardnet_fr', 'hazardnet_sp', 'unet')
DEFAULT_ARCH = 'hazardnet_sp'     # the shipped models/hazard.* design
CLASS_NAMES = list(LUNAR_CLASS_NAMES)     # a list: it goes into checkpoints and manifests
MEAN = [0.5, 0.5, 0.5]
STD = [0.25, 0.25, 0.25]
DEFAULT_PHOTOMETRIC = 'wide'      # the shipped model's recipe (session 8)


def arch_defaults(arch: str) -> dict:
    if arch == 'unet':
        return {'input_hw': (240, 352), 'epochs': 10, 'batch_size': 8, 'lr': 1e-3,
                'weight_decay': 0.0}
    return {'input_hw': (240, 352), 'epochs': 30, 'batch_size': 8, 'lr': 2e-3,
            'weight_decay': 1e-4}


def build_model(arch: str):
    if arch == 'unet':
        from ..nets.report_unet import ReportUNet
        return ReportUNet(in_channels=3, num_classes=NUM_CLASSES)
    if arch in ('hazardnet', 'hazardnet_fr', 'hazardnet_sp'):
        from ..nets.hazard_net import HazardNet
        return HazardNet(in_channels=3, num_classes=NUM_CLASSES, full_res=arch == 'hazardnet_fr',
                         subpixel=arch == 'hazardnet_sp')
    raise ValueError(f'unknown segmentation arch {arch!r} (known: {", ".join(ARCHS)})')


def list_samples(root, masks: str = 'clean') -> list:
    """(image, mask) samples of a Kaggle-layout set through the project loader
    (data/lunar_dataset.find_samples): missing masks / unreadable files are named and summarised."""
    problems = DataProblems(source=str(root))
    samples = find_samples(root, masks, problems=problems)
    if problems:
        print(problems.summary(limit=20))
    if not samples:
        raise UnusableDataset(f'{root}: no render/{masks} pairs (expected '
                              f'images/render/renderNNNN.png and images/{masks}/{masks}NNNN.png)')
    return samples


def read_sample(sample):
    """(RGB uint8 image, class ids uint8) of one sample, or None when a file is unreadable;
    mask pixels are classified by dominant channel (data/lunar_dataset.classify_mask)."""
    img, mask = read_rgb(sample.image), read_rgb(sample.mask)
    if img is None or mask is None:
        return None
    return img, classify_mask(mask)[0]


def load_segmentation_set(root, hw, masks='clean', desc='load', limit=0, color='rgb'):
    """(images, class maps) resized to `hw`; images (N, h, w, 3) uint8, or (N, h, w) luma
    when color='luma'."""
    samples = list_samples(root, masks)
    if limit:
        samples = samples[:limit]
    h, w = hw
    imgs, labels = [], []
    for sample in tqdm(samples, desc=f'{desc} {Path(root).name}', leave=False):
        pair = read_sample(sample)
        if pair is None:
            print(f'skipped unreadable {sample.image} / {sample.mask}')
            continue
        img, classes = pair
        if color == 'luma':
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        imgs.append(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
        labels.append(cv2.resize(classes, (w, h), interpolation=cv2.INTER_NEAREST_EXACT))
    return np.stack(imgs), np.stack(labels)


class SegmentationDataset(Dataset):
    def __init__(self, root, hw, masks='clean', train=False, augment=True, seed=0, limit=0,
                 crop_hw=None, color='rgb', photometric=DEFAULT_PHOTOMETRIC):
        self.wide = photometric == 'wide'
        self.images, self.labels = load_roots(load_segmentation_set, root, hw, masks,
                                              'train' if train else 'val', limit, color)
        self.crop_hw = tuple(crop_hw) if (crop_hw and train) else None
        self.train, self.augment, self.seed, self.epoch = train, augment and train, seed, 0
        self.mean = np.asarray(MEAN, np.float32)[:, None, None]
        self.std = np.asarray(STD, np.float32)[:, None, None]

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = self.images[i].astype(np.float32) / 255.0
        lab = self.labels[i]
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, i, torch.initial_seed() % 2 ** 31])
            if self.crop_hw:   # random crop at the model's scale (fully convolutional training)
                ch, cw = self.crop_hw
                y0 = int(rng.integers(0, img.shape[0] - ch + 1))
                x0 = int(rng.integers(0, img.shape[1] - cw + 1))
                img, lab = img[y0:y0 + ch, x0:x0 + cw], lab[y0:y0 + ch, x0:x0 + cw]
            if rng.random() < 0.5:
                img, lab = img[:, ::-1], lab[:, ::-1]
            img = img * rng.uniform(0.7, 1.3) + rng.uniform(-0.08, 0.08)
            if rng.random() < 0.5:
                img = np.power(np.clip(img, 0, 1), rng.uniform(0.75, 1.33))
            if self.wide and rng.random() < 0.25:   # another camera's point-spread function
                img = cv2.GaussianBlur(np.ascontiguousarray(img, np.float32), (0, 0),
                                       rng.uniform(0.3, 1.5))
            if rng.random() < 0.3:
                img = img + rng.normal(0, rng.uniform(0.005, 0.03), img.shape)
            img = np.clip(img, 0, 1)
        if img.ndim == 2:   # luma: the same plane in the three channels
            img = np.repeat(img[:, :, None], 3, 2)
        x = (np.ascontiguousarray(img.transpose(2, 0, 1)) - self.mean) / self.std
        return {'image': torch.from_numpy(x.astype(np.float32)),
                'target': torch.from_numpy(np.ascontiguousarray(lab).astype(np.int64))}


def confusion(pred: torch.Tensor, target: torch.Tensor, n: int = NUM_CLASSES) -> np.ndarray:
    idx = target.reshape(-1).long() * n + pred.reshape(-1).long()
    return torch.bincount(idx, minlength=n * n).reshape(n, n).cpu().numpy()


def class_pixel_counts(labels: np.ndarray, n: int = NUM_CLASSES) -> np.ndarray:
    """Pixels per class id over a stack of label maps, frame by frame: one bincount over the
    whole stack would cast it to int64 first (8 bytes per pixel: 26 GB for 10000 frames at
    480x720)."""
    counts = np.zeros(n, np.int64)
    for frame in labels:
        c = np.bincount(frame.reshape(-1), minlength=n)
        if len(c) > n:
            raise ValueError(f'label map holds class id {len(c) - 1}; the classes are 0..{n - 1}')
        counts += c
    return counts


def scores(cm: np.ndarray, class_names=CLASS_NAMES) -> dict:
    """mIoU (over the classes with a non-empty union), pixel accuracy and per-class IoU (NaN
    where the union is empty) of a confusion matrix (rows truth, columns prediction)."""
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    return {'miou': float(np.nanmean(iou)), 'pixel_accuracy': float(tp.sum() / max(cm.sum(), 1)),
            'iou': {name: float(v) for name, v in zip(class_names, iou)}}


class SegmentationTask:
    name = 'segmentation'
    metric_name = 'val_miou'
    metric_mode = 'max'

    def __init__(self, data, val, arch=DEFAULT_ARCH, masks='clean', input_hw=None, seed=0,
                 limit=0, crop_hw=None, color='rgb', photometric=DEFAULT_PHOTOMETRIC,
                 region_loss_name=DEFAULT_REGION_LOSS):
        if region_loss_name not in REGION_LOSSES:
            raise ValueError(f'unknown region loss {region_loss_name!r} '
                             f'(known: {", ".join(REGION_LOSSES)})')
        if arch == 'unet' and region_loss_name != DEFAULT_REGION_LOSS:
            raise ValueError('the report U-Net is trained with cross-entropy alone '
                             '(its recipe); a region loss applies to the hazardnet archs')
        self.region_loss_name = region_loss_name
        self.region_loss = region_loss(region_loss_name)
        if color not in COLOR_MODES:
            raise ValueError(f'unknown color mode {color!r} (known: {", ".join(COLOR_MODES)})')
        if photometric not in PHOTOMETRIC_MODES:
            raise ValueError(f'unknown photometric mode {photometric!r} '
                             f'(known: {", ".join(PHOTOMETRIC_MODES)})')
        self.color, self.photometric = color, photometric
        self.crop_hw = tuple(crop_hw) if crop_hw else None
        if arch not in ARCHS:
            raise ValueError(f'unknown segmentation arch {arch!r} (known: {", ".join(ARCHS)})')
        self.data, self.val, self.arch, self.masks = data, val, arch, masks
        self.input_hw = tuple(input_hw or arch_defaults(arch)['input_hw'])
        self.seed, self.limit = seed, limit
        self.n_train = self.n_val = 0

    def build_model(self):
        return build_model(self.arch)

    def datasets(self):
        tr = SegmentationDataset(self.data, self.input_hw, self.masks, True, True, self.seed,
                                 self.limit, self.crop_hw, self.color, self.photometric)
        va = SegmentationDataset(self.val, self.input_hw, self.masks, False, limit=self.limit,
                                 color=self.color)
        self.n_train, self.n_val = len(tr), len(va)
        if self.arch != 'unet':
            # CE class weights sqrt(median frequency balancing): rare rock pixels count more
            freq = class_pixel_counts(tr.labels).astype(np.float64)
            freq = np.maximum(freq / freq.sum(), 1e-6)
            w = np.sqrt(np.median(freq) / freq)
            self.class_weights = torch.tensor(w / w.mean(), dtype=torch.float32)
        return tr, va

    def config(self):
        h, w = self.input_hw
        return {'input': {'height': h, 'width': w, 'channels': 3, 'resize': 'area',
                          'mean': MEAN, 'std': STD, 'color': self.color},
                'output': 'logits_nchw', 'class_names': CLASS_NAMES, 'masks': self.masks,
                'data': describe(self.data), 'val': str(self.val), 'n_train': self.n_train,
                'n_val': self.n_val, 'train_crop_hw': list(self.crop_hw) if self.crop_hw else None,
                'photometric': self.photometric,
                'loss': 'cross-entropy' if self.arch == 'unet' else
                        f'class-weighted cross-entropy + {self.region_loss_name}',
                'class_weights': [round(float(v), 4) for v in getattr(self, 'class_weights', [])]}

    def optimizer(self, model, cfg):
        if self.arch == 'unet':
            return torch.optim.Adam(model.parameters(), lr=cfg.lr), None
        return adamw_one_cycle(model, cfg, self.n_train, final_div_factor=100)

    def loss(self, outputs, batch):
        if self.arch == 'unet':
            ce = F.cross_entropy(outputs, batch['target'])
            return ce, {'ce': float(ce.detach())}
        weight = getattr(self, 'class_weights', None)
        ce = F.cross_entropy(outputs, batch['target'],
                             weight=None if weight is None else weight.to(outputs.device))
        r = self.region_loss(outputs, batch['target'])
        return ce + r, {'ce': float(ce.detach()), self.region_loss_name: float(r.detach())}

    def val_begin(self):
        self._cm = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)

    def val_step(self, outputs, batch):
        self._cm += confusion(outputs.argmax(1), batch['target'])

    def val_end(self):
        s = scores(self._cm)
        out = {'val_miou': s['miou'], 'val_pixel_accuracy': s['pixel_accuracy']}
        out.update({f'val_iou_{k}': v for k, v in s['iou'].items()})
        return out

    def save_overlay(self, outputs, batch, path):
        n = min(4, len(outputs))
        mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        std = torch.tensor(STD).view(1, 3, 1, 1)
        imgs = (batch['image'][:n] * std + mean).permute(0, 2, 3, 1).numpy()
        plots.segmentation_overlay(imgs, batch['target'][:n].numpy(),
                                   outputs[:n].argmax(1).numpy(), path)
