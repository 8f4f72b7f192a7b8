"""The benchmark's input frames, rendered with the project's renderers.

asteroid: 1024 x 1024 mono8 (synth/asteroid.py); lunar: 720 x 480 (W x H) rgb8 (synth/lunar.py).
If a renderer cannot be imported (source tree without it), a plain procedural frame of the same
size and encoding is used and the results say ``frames_source: procedural``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .common import log

SIZES = {'asteroid': (1024, 1024, 'mono8'), 'lunar': (480, 720, 'rgb8')}   # (H, W, encoding)


def _conform(img: np.ndarray, kind: str) -> np.ndarray:
    h, w, enc = SIZES[kind]
    img = np.asarray(img)
    if img.dtype != np.uint8:
        scale = 255.0 if img.dtype.kind == 'f' and float(np.nanmax(img)) <= 1.0 + 1e-6 else \
            (255.0 / 65535.0 if img.dtype == np.uint16 else 1.0)
        img = np.clip(np.nan_to_num(img.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    if enc == 'mono8' and img.ndim == 3:
        img = img[..., :3].mean(axis=2).astype(np.uint8)
    if enc == 'rgb8' and img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[:2] != (h, w):
        import cv2
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


def _procedural(kind: str, seed: int) -> np.ndarray:
    h, w, enc = SIZES[kind]
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 'asteroid':
        cx, cy, r = rng.uniform(0.3 * w, 0.7 * w), rng.uniform(0.3 * h, 0.7 * h), 0.2 * h
        img = np.clip(1.0 - ((xx - cx) ** 2 + (yy - cy) ** 2) / r ** 2, 0, 1) * 220
        return img.astype(np.uint8)
    img = rng.integers(40, 120, size=(h, w, 3), dtype=np.uint8)
    img[: h // 3] = (20, 20, 30)
    return img


def _render(kind: str, seed: int) -> np.ndarray:
    h, w, _ = SIZES[kind]
    if kind == 'asteroid':
        from spacenav_perception.synth import asteroid
        image, _label, _meta = asteroid.render_scene(seed, size=w, device='auto')
        return image
    from spacenav_perception.synth import lunar
    rgb, _ground, _clean, _meta = lunar.render_scene(seed, width=w, height=h, device='auto')
    return rgb


def _cache_dir(kind: str) -> Path:
    """Rendering costs seconds per frame on a CPU: frames are cached, keyed by the renderer
    sources (a renderer change renders anew)."""
    import spacenav_perception
    from .models import cache_root
    synth = Path(spacenav_perception.__file__).resolve().parent / 'synth'
    digest = hashlib.sha256()
    for p in sorted(synth.glob('*.py')):
        digest.update(p.name.encode() + p.read_bytes())
    return cache_root().parent / 'bench_frames' / digest.hexdigest()[:16] / kind


def render_frames(kind: str, count: int = 4, seed: int = 7) -> tuple[list, str, str]:
    """`count` frames of `kind` -> (list of arrays, encoding, source)."""
    h, w, enc = SIZES[kind]
    try:
        folder = _cache_dir(kind)
        frames = []
        for i in range(count):
            path = folder / f'{seed + i}.npy'
            if path.is_file():
                frames.append(np.load(path))
                continue
            log(f'[bench] rendering {kind} frame {i + 1}/{count} (cached in {folder})')
            frame = _conform(_render(kind, seed + i), kind)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix('.tmp.npy')
            np.save(tmp, frame)
            tmp.replace(path)
            frames.append(frame)
        return frames, enc, 'rendered'
    except Exception as exc:  # the renderer is missing or its API changed: say so, go on
        log(f'[bench] {kind} renderer unavailable ({type(exc).__name__}: {exc}); '
            'using procedural frames')
        return [_procedural(kind, seed + i) for i in range(count)], enc, 'procedural'
