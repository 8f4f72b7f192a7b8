"""Lunar hazard-segmentation data in the Kaggle "Artificial Lunar Rocky Landscape" layout.

    ROOT/images/render/renderNNNN.png     RGB render
    ROOT/images/clean/cleanNNNN.png       mask, tiny rocks relabelled ground   (masks='clean')
    ROOT/images/ground/groundNNNN.png     full mask                            (masks='ground')
    ROOT/real_moon_images/NAME.png        real photograph (optional folder; also looked for
    ROOT/real_moon_images/g_NAME.png      under ROOT/images/), its mask is g_ + the image name

`spacenav synth lunar` (synth/lunar.py) writes the same layout.

Mask colours -> class ids, by DOMINANT CHANNEL (exact colour matching is wrong: the Kaggle masks
darken with distance and have blended edges):
    max(R, G, B) <  threshold (default 40)   -> 0 ground
    otherwise the strongest channel:  R -> 3 sky,  G -> 1 small rock,  B -> 2 large rock
    a pixel whose second-strongest channel is also >= threshold and >= `ambiguity` (0.7) times
    the strongest is an UNKNOWN colour (e.g. (120, 120, 0)): it is reported once per mask as
    'unknown_mask_colour' through DataProblems and labelled `unknown_label` (default 0 = ground;
    pass IGNORE_INDEX = 255 to leave those pixels out of a loss that ignores 255).

Problems (missing mask or image, unreadable PNG, unknown mask colour) go through
`data/problems.py`: by default the item is skipped (unknown colours: only reported) and listed in
`problems.summary()`; strict=True raises `DataError` at the first one. Problems found while
loading items inside DataLoader worker processes are recorded in the worker's copy.

Splits are deterministic: samples are sorted by name and permuted with `seed`, so the same folder
and seed always give the same train/val/test lists whatever the file-system order.

Augmentation (`LunarAugment`) keeps masks aligned: horizontal flips, random crops (zoom) resized
back with NEAREST for masks, gain/gamma/noise/blur on the image only. No vertical flips by default:
the sky is always at the top of a lunar surface view, and a flipped frame would teach the network
a sky-below-ground layout it never sees.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spacenav_perception.data import augment as aug
from spacenav_perception.data.problems import DataProblems
from spacenav_perception.core.lunar_classes import (  # noqa: F401  (re-exported)
    CLASS_NAMES, GROUND, LARGE_ROCK, PALETTE, SKY, SMALL_ROCK)

IGNORE_INDEX = 255
DEFAULT_THRESHOLD = 40
DEFAULT_AMBIGUITY = 0.7
# channel index (R, G, B) -> class id
_CHANNEL_CLASS = np.array([SKY, SMALL_ROCK, LARGE_ROCK], dtype=np.uint8)
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def classify_mask(rgb: np.ndarray, threshold: int = DEFAULT_THRESHOLD,
                  ambiguity: float = DEFAULT_AMBIGUITY, unknown_label: int = GROUND):
    """RGB mask (H, W, 3) uint8 -> (class ids (H, W) uint8, unknown-pixel bool mask (H, W)).
    See the module doc for the rule."""
    a = np.asarray(rgb)
    if a.ndim == 2:                       # grey mask: anything bright is not interpretable
        a = np.repeat(a[:, :, None], 3, axis=2)
    a = a[:, :, :3].astype(np.int16)
    srt = np.sort(a, axis=2)
    top, second = srt[:, :, 2], srt[:, :, 1]
    cls = _CHANNEL_CLASS[np.argmax(a, axis=2)]
    strong = top >= threshold
    unknown = strong & (second >= threshold) & (second >= ambiguity * top)
    cls = np.where(strong, cls, GROUND).astype(np.uint8)
    cls[unknown] = unknown_label
    return cls, unknown


def mask_to_rgb(classes: np.ndarray) -> np.ndarray:
    """Class ids -> palette colours (ignore index -> white)."""
    pal = np.full((256, 3), 255, dtype=np.uint8)
    pal[:4] = PALETTE
    return pal[np.asarray(classes, dtype=np.uint8)]


def read_rgb(path) -> np.ndarray | None:
    """PNG/JPEG -> RGB uint8 (H, W, 3), None when unreadable."""
    import cv2
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        return None
    if img.dtype != np.uint8:
        img = (img.astype(np.float32) * (255.0 / np.iinfo(img.dtype).max) + 0.5).astype(np.uint8) \
            if np.issubdtype(img.dtype, np.integer) else np.clip(img * 255, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 4:
        img = img[:, :, :3]
    return np.ascontiguousarray(img[:, :, ::-1])


def _looks_like_png(path: Path) -> bool:
    try:
        with open(path, 'rb') as fh:
            head = fh.read(8)
    except OSError:
        return False
    return head == _PNG_SIGNATURE if path.suffix.lower() == '.png' else len(head) > 0


@dataclass(frozen=True)
class LunarSample:
    name: str            # file name of the image, e.g. render0001.png or PCAM1.png
    image: Path
    mask: Path
    source: str          # 'render' or 'real'


def _number(name: str):
    m = re.search(r'(\d+)(?=\.[^.]+$)', name)
    return m.group(1) if m else None


def find_samples(root, masks: str = 'clean', sources=('render',),
                 problems: DataProblems | None = None, check_files: bool = True) -> list[LunarSample]:
    """All (image, mask) pairs under `root` (see the module doc), sorted by source then name.

    masks: 'clean' or 'ground' for renders (real images always use their g_ masks).
    sources: any of 'render', 'real'. A missing real_moon_images folder gives no real samples
    (not a problem); a missing render folder when 'render' is asked for is a 'missing_file'."""
    if masks not in ('clean', 'ground'):
        raise ValueError(f"masks must be 'clean' or 'ground', not {masks!r}")
    problems = problems if problems is not None else DataProblems()
    root = Path(root)
    out: list[LunarSample] = []
    if 'render' in sources:
        rdir, mdir = root / 'images' / 'render', root / 'images' / masks
        if not rdir.is_dir():
            problems.record('missing_file', rdir, 'render folder not found')
        else:
            mask_files = {}
            if mdir.is_dir():
                for p in mdir.iterdir():
                    num = _number(p.name)
                    if num is not None and p.name.startswith(masks):
                        mask_files[num] = p
            seen = set()
            for img in sorted(rdir.glob('render*.png')):
                num = _number(img.name)
                seen.add(num)
                mp = mask_files.get(num)
                if mp is None:
                    problems.record('missing_mask', img, f'no {masks}{num}.png in {mdir}')
                    continue
                out.append(LunarSample(img.name, img, mp, 'render'))
            for num, mp in sorted(mask_files.items()):
                if num not in seen:
                    problems.record('missing_image', mp, f'no render{num}.png for this mask')
    if 'real' in sources:
        for rdir in (root / 'real_moon_images', root / 'images' / 'real_moon_images'):
            if not rdir.is_dir():
                continue
            files = {p.name: p for p in rdir.iterdir()
                     if p.suffix.lower() in ('.png', '.jpg', '.jpeg')}
            for name in sorted(files):
                if name.startswith('g_'):
                    if name[2:] not in files:
                        problems.record('missing_image', files[name], f'no {name[2:]} for this mask')
                    continue
                mp = files.get('g_' + name)
                if mp is None:
                    problems.record('missing_mask', files[name], f'no g_{name} in {rdir}')
                    continue
                out.append(LunarSample(name, files[name], mp, 'real'))
            break
    if check_files:
        good = []
        for s in out:
            bad = [p for p in (s.image, s.mask) if not _looks_like_png(p)]
            if bad:
                problems.record('unreadable_image', bad[0], 'empty, truncated or not a PNG')
                continue
            good.append(s)
        out = good
    return out


def split_samples(samples, val_frac: float = 0.1, test_frac: float = 0.1, seed: int = 0) -> dict:
    """Deterministic split -> {'train': [...], 'val': [...], 'test': [...]} (by sorted name)."""
    ordered = sorted(samples, key=lambda s: (s.source, s.name))
    perm = np.random.default_rng(seed).permutation(len(ordered))
    n = len(ordered)
    n_test = int(round(test_frac * n))
    n_val = int(round(val_frac * n))
    test = [ordered[i] for i in sorted(perm[:n_test])]
    val = [ordered[i] for i in sorted(perm[n_test:n_test + n_val])]
    train = [ordered[i] for i in sorted(perm[n_test + n_val:])]
    return {'train': train, 'val': val, 'test': test}


@dataclass
class LunarAugment(aug.Photometric):
    """Label-exact augmentation for (image uint8 HxWx3, class mask HxW). No vertical flips by
    default (sky is up); crops zoom in by up to 1/min_scale and are resized back to the input
    size (image INTER_LINEAR, mask INTER_NEAREST)."""
    p_hflip: float = 0.5
    p_vflip: float = 0.0
    p_crop: float = 0.5
    min_scale: float = 0.6

    def __call__(self, image, mask, rng: np.random.Generator):
        import cv2
        img, m = image, mask
        if rng.random() < self.p_hflip:
            img, _, m = aug.hflip(img, None, m)
        if rng.random() < self.p_vflip:
            img, _, m = aug.vflip(img, None, m)
        if rng.random() < self.p_crop:
            h, w = img.shape[:2]
            sc = rng.uniform(self.min_scale, 1.0)
            cw, ch = max(1, int(round(w * sc))), max(1, int(round(h * sc)))
            x0 = int(rng.integers(0, w - cw + 1))
            y0 = int(rng.integers(0, h - ch + 1))
            img, _, m = aug.crop(img, x0, y0, cw, ch, None, m)
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
            m = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
        img = self.photometric(img, rng)
        return np.ascontiguousarray(img), np.ascontiguousarray(m)


class LunarDataset(torch.utils.data.Dataset):
    """Images (float (C, h, w) in [0, 1]) and class masks (long (h, w)) at the model input size.

    root: data folder (Kaggle layout). split: 'train' | 'val' | 'test' | 'all'.
    size: (height, width) of the model input, None = native. channels: 3 (RGB) or 1 (luminance).
    masks: 'clean' | 'ground'. sources: ('render',), ('real',) or both.
    augment: None / False, True (default LunarAugment) or a callable (image, mask, rng).
    cache: keep decoded, resized (pre-augmentation) arrays in memory.
    Items whose files cannot be read are skipped (reported); `full_mask(i)` / `full_image(i)`
    give the native-resolution arrays for evaluation at the input resolution."""

    def __init__(self, root, split: str = 'all', size=None, channels: int = 3, masks: str = 'clean',
                 sources=('render',), augment=None, cache: bool = False, seed: int = 0,
                 val_frac: float = 0.1, test_frac: float = 0.1,
                 threshold: int = DEFAULT_THRESHOLD, ambiguity: float = DEFAULT_AMBIGUITY,
                 unknown_label: int = GROUND, strict: bool = False,
                 problems: DataProblems | None = None, samples=None):
        self.root = Path(root)
        self.problems = problems if problems is not None else DataProblems(strict, str(root))
        if samples is None:
            samples = find_samples(self.root, masks, sources, self.problems)
            if split != 'all':
                samples = split_samples(samples, val_frac, test_frac, seed)[split]
        self.samples = list(samples)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.channels = int(channels)
        self.augment = LunarAugment() if augment is True else (augment or None)
        self.cache = {} if cache else None
        self.seed = int(seed)
        self.threshold, self.ambiguity, self.unknown_label = threshold, ambiguity, unknown_label
        self._epoch = 0
        self._reported = set()

    def __len__(self):
        return len(self.samples)

    def set_epoch(self, epoch: int):
        """Augmentation draws depend on (seed, epoch, index): call once per epoch."""
        self._epoch = int(epoch)

    def name(self, i) -> str:
        return self.samples[i].name

    def full_image(self, i) -> np.ndarray | None:
        return read_rgb(self.samples[i].image)

    def full_mask(self, i) -> np.ndarray | None:
        """Native-resolution class ids (H, W) uint8, None when unreadable."""
        s = self.samples[i]
        rgb = read_rgb(s.mask)
        if rgb is None:
            return None
        cls, unknown = classify_mask(rgb, self.threshold, self.ambiguity, self.unknown_label)
        n_unk = int(unknown.sum())
        if n_unk and s.mask not in self._reported:
            self._reported.add(s.mask)
            ys, xs = np.nonzero(unknown)
            self.problems.record('unknown_mask_colour', s.mask,
                                 f'{n_unk} px, e.g. {tuple(int(v) for v in rgb[ys[0], xs[0]])} at '
                                 f'({xs[0]}, {ys[0]}) -> class {self.unknown_label}')
        return cls

    def load_pair(self, i):
        """(image uint8 HxWx3 at the input size, mask uint8 HxW at the input size) or None."""
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        import cv2
        s = self.samples[i]
        img = read_rgb(s.image)
        if img is None:
            self.problems.record('unreadable_image', s.image, 'could not decode')
            return None
        cls = self.full_mask(i)
        if cls is None:
            self.problems.record('unreadable_image', s.mask, 'could not decode')
            return None
        if cls.shape != img.shape[:2]:
            self.problems.record('bad_image_size', s.mask,
                                 f'mask {cls.shape[1]}x{cls.shape[0]} vs image {img.shape[1]}x{img.shape[0]}')
            return None
        if self.size is not None and (img.shape[0], img.shape[1]) != self.size:
            h, w = self.size
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
            cls = cv2.resize(cls, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
        pair = (img, cls)
        if self.cache is not None:
            self.cache[i] = pair
        return pair

    def __getitem__(self, i):
        n = len(self.samples)
        for k in range(n):
            j = (i + k) % n
            pair = self.load_pair(j)
            if pair is not None:
                break
        else:
            raise IndexError(f'no readable sample in {self.root}')
        img, cls = pair
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self._epoch, j])
            img, cls = self.augment(img, cls, rng)
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0
        if self.channels == 1:
            x = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None]
        return x, torch.from_numpy(np.ascontiguousarray(cls)).long()

    def class_fractions(self, max_items: int | None = None) -> np.ndarray:
        """Pixel fraction of each class (4,) over the (input-size) masks, ignore index excluded."""
        counts = np.zeros(4, dtype=np.float64)
        n = len(self) if max_items is None else min(len(self), max_items)
        for i in range(n):
            pair = self.load_pair(i)
            if pair is not None:
                counts += np.bincount(pair[1].reshape(-1), minlength=256)[:4]
        return counts / max(counts.sum(), 1)
