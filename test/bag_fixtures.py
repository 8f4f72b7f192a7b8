"""Small hand-made datasets with exactly known content (asteroid and lunar layouts) and the
`spacenav` CLI as a subprocess, shared by the bag, replay and eval tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

# Lunar mask colours (RGB) per class id: ground, small rock, large rock, sky.
LUNAR_RGB = np.array([(0, 0, 0), (0, 255, 0), (0, 0, 255), (255, 0, 0)], np.uint8)
T0_SEC = 1_700_000_000


def make_asteroid_dataset(directory, n=4, width=40, height=32, seed=0, nan_rows=(),
                          missing=(), bad_rows=()):
    """labels.csv + images/ with random mono8 PNGs; returns [(name, x, y)] as written.

    nan_rows: indices whose label is 'nan,nan' (no target); missing: indices whose PNG is not
    written; bad_rows: extra malformed CSV lines appended.
    """
    directory = Path(directory)
    (directory / 'images').mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    lines = ['image_name,x_coordinate,y_coordinate']
    for i in range(n):
        name = f'asteroid_{i:06d}.png'
        if i not in missing:
            image = rng.integers(0, 256, (height, width), dtype=np.uint8)
            assert cv2.imwrite(str(directory / 'images' / name), image)
        if i in nan_rows:
            x = y = float('nan')
            lines.append(f'{name},nan,nan')
        else:
            x, y = float(rng.uniform(0, width - 1)), float(rng.uniform(0, height - 1))
            lines.append(f'{name},{x!r},{y!r}')
        rows.append((name, x, y))
    lines.extend(bad_rows)
    (directory / 'labels.csv').write_text('\n'.join(lines) + '\n')
    return rows


def make_lunar_dataset(directory, n=3, width=24, height=16, seed=0, hfov_deg=None):
    """images/render + images/clean + images/ground PNGs; returns [(render RGB, class ids)]."""
    directory = Path(directory)
    for sub in ('render', 'clean', 'ground'):
        (directory / 'images' / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        num = f'{i + 1:04d}'
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        classes = rng.integers(0, 4, (height, width)).astype(np.uint8)
        mask = LUNAR_RGB[classes]
        cv2.imwrite(str(directory / 'images' / 'render' / f'render{num}.png'),
                    cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(directory / 'images' / 'clean' / f'clean{num}.png'),
                    cv2.cvtColor(mask, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(directory / 'images' / 'ground' / f'ground{num}.png'),
                    cv2.cvtColor(mask, cv2.COLOR_RGB2BGR))
        out.append((rgb, classes))
    if hfov_deg is not None:
        lines = ['image_name,index,hfov_deg'] + [f'render{i + 1:04d}.png,{i},{hfov_deg}'
                                                for i in range(n)]
        (directory / 'meta.csv').write_text('\n'.join(lines) + '\n')
    return out


def spacenav(*args, timeout=300, check=False, **kwargs) -> subprocess.CompletedProcess:
    """Run the `spacenav` CLI of this interpreter's environment."""
    cmd = [sys.executable, '-m', 'spacenav_perception.cli', *map(str, args)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                            env=dict(os.environ), **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f'{cmd} failed ({result.returncode}):\n{result.stdout}\n'
                             f'{result.stderr}')
    return result


def make_bag(data, out, *extra, check=True):
    return spacenav('bag', 'make', '--data', data, '--out', out, '--t0-sec', T0_SEC,
                    '--no-progress', *extra, check=check)
