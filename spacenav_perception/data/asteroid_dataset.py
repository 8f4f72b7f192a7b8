"""Loader for asteroid centroid data sets in the thesis layout.

    DIR/images/<image_name>      PNG, any size, 8- or 16-bit, grayscale (colour is converted)
    DIR/labels.csv               header image_name,x_coordinate,y_coordinate (extra columns
                                 ignored); full-resolution pixels, project convention (centre of
                                 the top-left pixel = (0, 0))
    DIR/meta.csv                 optional, image_name + any columns (e.g. from the renderer)

`read_index` checks the CSV and that every listed image exists and has a readable PNG header;
problems (missing image, malformed row, unreadable PNG, label outside the image) go to a
`DataProblems`: skipped and summarised by default, `strict=True` raises `DataError` at the first.

`AsteroidDataset` loads images lazily (optionally caching the resized ones) and returns, per item:
    image        float32 tensor (1, h, w) in [0, 1], resized to the model input size
    label        float32 (2,) label in input pixels: (x + 0.5) * s - 0.5 (project convention),
                 or x * s with thesis_scaling=True (the thesis's own scaling, for its baseline)
    label_full   float64 (2,) the original full-resolution label
    size_full    int64 (2,) original (width, height)
    index        int, position in the data set; the name is `dataset.records[index].name`
    meta         dict of floats (only with with_meta=True and a meta.csv)
"""
from __future__ import annotations

import csv
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spacenav_perception.data.problems import DataError, DataProblems

LABEL_COLUMNS = ('image_name', 'x_coordinate', 'y_coordinate')
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


@dataclass
class AsteroidRecord:
    name: str
    path: Path
    x: float
    y: float
    width: int = 0
    height: int = 0
    meta: dict = field(default_factory=dict)


def png_size(path) -> tuple[int, int, int]:
    """(width, height, bit depth) from a PNG header; raises ValueError when it is not one."""
    with open(path, 'rb') as fh:
        head = fh.read(33)
    if len(head) < 33 or head[:8] != PNG_SIGNATURE or head[12:16] != b'IHDR':
        raise ValueError('not a PNG file (bad signature or header)')
    w, h, depth = struct.unpack('>IIB', head[16:25])
    if w == 0 or h == 0:
        raise ValueError('zero-size PNG')
    return w, h, depth


def read_image(path, problems: DataProblems | None = None) -> np.ndarray | None:
    """Decode an image as (H, W) grayscale uint8/uint16 (cv2.IMREAD_UNCHANGED, colour -> gray).
    Returns None and records 'unreadable_image' when it cannot be decoded."""
    import cv2
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        if problems is not None:
            problems.record('unreadable_image', path, 'cv2 could not decode it')
        return None
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[:, :, :3]
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.shape[2] == 3 else img[:, :, 0]
    return img


def to_unit_float(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    return np.clip(img.astype(np.float32), 0.0, 1.0)


def _read_csv(path: Path, problems: DataProblems, required=()) -> list[dict] | None:
    try:
        with open(path, newline='') as fh:
            reader = csv.DictReader(fh)
            fields = [f.strip() for f in (reader.fieldnames or [])]
            missing = [c for c in required if c not in fields]
            if missing:
                problems.record('bad_header', path, f'missing columns {missing}, found {fields}')
                return None
            rows = []
            for row in reader:
                rows.append({(k or '').strip(): v for k, v in row.items()})
            return rows
    except FileNotFoundError:
        problems.record('missing_file', path, 'no such file')
        return None
    except (UnicodeDecodeError, csv.Error) as exc:
        problems.record('bad_file', path, f'cannot parse CSV: {exc}')
        return None


def _float_or_str(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def read_index(root, labels_csv=None, images_dir=None, meta_csv=None, *,
               problems: DataProblems | None = None, strict: bool = False,
               check_headers: bool = True) -> tuple[list[AsteroidRecord], DataProblems]:
    """Read labels (+ meta) and check the files. Returns (good records, problems)."""
    root = Path(root) if root is not None else None
    labels_csv = Path(labels_csv) if labels_csv else root / 'labels.csv'
    images_dir = Path(images_dir) if images_dir else (root or labels_csv.parent) / 'images'
    if meta_csv is None and root is not None and (root / 'meta.csv').exists():
        meta_csv = root / 'meta.csv'
    problems = problems if problems is not None else DataProblems(strict=strict,
                                                                  source=str(labels_csv))
    rows = _read_csv(labels_csv, problems, LABEL_COLUMNS)
    if rows is None:
        return [], problems
    meta = {}
    if meta_csv is not None:
        mrows = _read_csv(Path(meta_csv), problems, ('image_name',))
        for r in mrows or []:
            meta[r.get('image_name', '')] = {k: _float_or_str(v) for k, v in r.items()
                                              if k != 'image_name'}
    records, seen = [], set()
    for line, row in enumerate(rows, start=2):          # line 1 is the header
        name = (row.get('image_name') or '').strip()
        where = f'{labels_csv}:{line}'
        if not name:
            problems.record('bad_row', where, 'empty image_name')
            continue
        try:
            x = float(row.get('x_coordinate'))
            y = float(row.get('y_coordinate'))
        except (TypeError, ValueError):
            problems.record('bad_row', where, f'{name}: coordinates '
                            f'{row.get("x_coordinate")!r}, {row.get("y_coordinate")!r} '
                            'are not numbers')
            continue
        if not (math.isfinite(x) and math.isfinite(y)):
            problems.record('bad_row', where, f'{name}: non-finite coordinates')
            continue
        if name in seen:
            problems.record('bad_row', where, f'{name}: duplicate image_name')
            continue
        seen.add(name)
        path = images_dir / name
        if not path.is_file():
            problems.record('missing_image', path, f'listed at {where}')
            continue
        w = h = 0
        if check_headers:
            try:
                w, h, _ = png_size(path)
            except (OSError, ValueError, struct.error) as exc:
                problems.record('unreadable_image', path, str(exc))
                continue
            if not (-0.5 <= x < w - 0.5 and -0.5 <= y < h - 0.5):
                problems.record('label_outside_image', where,
                                f'{name}: ({x:.2f}, {y:.2f}) outside {w}x{h}')
                continue
        records.append(AsteroidRecord(name, path, x, y, w, h, meta.get(name, {})))
    return records, problems


def split_records(records, fractions=(0.8, 0.1, 0.1), seed: int = 0):
    """Deterministic split by `seed`: records are ordered by name, permuted with
    numpy Generator(seed), and cut by `fractions` (normalised). Returns a list of lists."""
    fr = np.asarray(fractions, np.float64)
    if (fr < 0).any() or fr.sum() <= 0:
        raise ValueError(f'bad split fractions {fractions}')
    fr = fr / fr.sum()
    ordered = sorted(records, key=lambda r: r.name)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    bounds = np.rint(np.cumsum(fr) * len(ordered)).astype(int)
    out, start = [], 0
    for b in bounds:
        out.append([ordered[i] for i in perm[start:b]])
        start = b
    return out


def scale_label(x, y, src_w, src_h, dst_w, dst_h, thesis_scaling=False):
    """Full-resolution label -> input-size label."""
    sx, sy = dst_w / src_w, dst_h / src_h
    if thesis_scaling:
        return x * sx, y * sy
    return (x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5


def unscale_label(x, y, src_w, src_h, dst_w, dst_h, thesis_scaling=False):
    """Inverse of `scale_label`: input-size label -> full resolution."""
    sx, sy = dst_w / src_w, dst_h / src_h
    if thesis_scaling:
        return x / sx, y / sy
    return (x + 0.5) / sx - 0.5, (y + 0.5) / sy - 0.5


def resize_image(img: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2
    if img.shape[1] == width and img.shape[0] == height:
        return img
    down = width < img.shape[1] or height < img.shape[0]
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if down
                      else cv2.INTER_LINEAR)


try:
    from torch.utils.data import Dataset as _TorchDataset
except ImportError:        # pragma: no cover - torch is a dependency
    _TorchDataset = object


class AsteroidDataset(_TorchDataset):
    """Torch data set over an asteroid centroid data set (see the module doc).

    root / records: a data set directory, or records from `read_index` / `split_records`.
    input_size: int or (width, height) of the model input.
    augment: optional callable(image float32 (h, w), points (1, 2), rng) -> (image, points, _)
             applied at input size (e.g. `augment.Augmenter`); label_full follows the label.
    cache: keep the resized images (their original dtype) in memory after the first read.
    """

    def __init__(self, root=None, *, records=None, input_size=128, thesis_scaling=False,
                 strict=False, cache=False, augment=None, seed=0, with_meta=False,
                 labels_csv=None, images_dir=None, problems: DataProblems | None = None):
        self.problems = problems if problems is not None else DataProblems(
            strict=strict, source=str(root or labels_csv or 'records'))
        if records is None:
            records, _ = read_index(root, labels_csv, images_dir, problems=self.problems)
        self.records = list(records)
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        self.in_w, self.in_h = int(input_size[0]), int(input_size[1])
        self.thesis_scaling = thesis_scaling
        self.cache = {} if cache else None
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.with_meta = with_meta

    def __len__(self):
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Augmentation draws depend on (seed, epoch, index)."""
        self.epoch = int(epoch)

    def _load_small(self, i):
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        rec = self.records[i]
        img = read_image(rec.path)
        if img is None:
            p = self.problems.record('unreadable_image', rec.path, 'cv2 could not decode it')
            raise DataError(p)
        full_w, full_h = img.shape[1], img.shape[0]
        small = resize_image(img, self.in_w, self.in_h)
        item = (small, full_w, full_h)
        if self.cache is not None:
            self.cache[i] = item
        return item

    def __getitem__(self, i):
        import torch
        rec = self.records[i]
        small, full_w, full_h = self._load_small(i)
        image = to_unit_float(small)
        lx, ly = scale_label(rec.x, rec.y, full_w, full_h, self.in_w, self.in_h,
                             self.thesis_scaling)
        fx, fy = rec.x, rec.y
        if self.augment is not None:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, i]))
            image, pts, _ = self.augment(image, np.array([[lx, ly]]), None, rng=rng)
            lx, ly = float(pts[0, 0]), float(pts[0, 1])
            fx, fy = unscale_label(lx, ly, full_w, full_h, self.in_w, self.in_h,
                                   self.thesis_scaling)
        out = {
            'image': torch.from_numpy(np.ascontiguousarray(image, np.float32))[None],
            'label': torch.tensor([lx, ly], dtype=torch.float32),
            'label_full': torch.tensor([fx, fy], dtype=torch.float64),
            'size_full': torch.tensor([full_w, full_h], dtype=torch.int64),
            'index': i,
        }
        if self.with_meta:
            out['meta'] = {k: float(v) for k, v in rec.meta.items()
                           if isinstance(v, float)}
        return out
