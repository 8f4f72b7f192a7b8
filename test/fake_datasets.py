"""Tiny datasets in the project layouts for the training / export / evaluation tests."""
import csv
from pathlib import Path

import cv2
import numpy as np


def make_asteroid_set(root, n=12, size=96, seed=0, silhouettes=True, sun_dirs=False):
    """Half-lit discs on black; labels = disc centres (full-res px, project convention);
    silhouettes/ = the whole discs (as the renderer writes them) unless silhouettes=False.
    Lit from +x, or with sun_dirs from a random direction per disc, written to meta.csv as the
    renderer does (sun_cam_x, sun_cam_y: image x right, y down)."""
    root = Path(root)
    (root / 'images').mkdir(parents=True, exist_ok=True)
    if silhouettes:
        (root / 'silhouettes').mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    with open(root / 'labels.csv', 'w', newline='') as f, open(root / 'meta.csv', 'w', newline='') as m:
        w, mw = csv.writer(f), csv.writer(m)
        w.writerow(['image_name', 'x_coordinate', 'y_coordinate'])
        mw.writerow(['image_name', 'phase_deg', 'apparent_diameter_px', 'cut_by_edge',
                     'reflectance', 'sun_cam_x', 'sun_cam_y', 'sun_cam_z'])
        for i in range(n):
            cx, cy = rng.uniform(0.3, 0.7, 2) * size
            r = rng.uniform(0.08, 0.18) * size
            inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
            a = rng.uniform(-np.pi, np.pi) if sun_dirs else 0.0
            ux, uy = np.cos(a), np.sin(a)
            ramp = ((xx - cx) * ux + (yy - cy) * uy) / r
            img = np.where(inside, 0.3 + 0.6 * np.clip(ramp + 0.5, 0, 1), 0.0)
            name = f'asteroid_{i:06d}.png'
            cv2.imwrite(str(root / 'images' / name), np.rint(img * 255).astype(np.uint8))
            if silhouettes:
                cv2.imwrite(str(root / 'silhouettes' / name), inside.astype(np.uint8) * 255)
            w.writerow([name, f'{cx:.4f}', f'{cy:.4f}'])
            mw.writerow([name, f'{rng.uniform(0, 120):.1f}', f'{2 * r:.3f}', 0,  # whole discs
                         ('mcewen', 'minnaert k=0.700')[i % 2],
                         f'{0.8 * ux:.6f}', f'{0.8 * uy:.6f}', '0.6'])
    return root


def make_lunar_set(root, n=4, h=48, w=64, seed=0):
    """Random terrain with a sky band and two rocks, Kaggle layout (clean masks)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for k in ('render', 'clean', 'ground'):
        (root / 'images' / k).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = (rng.random((h, w, 3)) * 120 + 60).astype(np.uint8)
        mask = np.zeros((h, w, 3), np.uint8)            # RGB
        mask[: h // 5] = (255, 0, 0)                      # sky
        img[: h // 5] = 5
        mask[h // 2:h // 2 + 4, 8:12] = (0, 255, 0)       # small rock
        mask[h - 14:h - 4, 30:44] = (0, 0, 255)           # large rock
        img[h - 14:h - 4, 30:44] = 230
        num = f'{i + 1:04d}'
        cv2.imwrite(str(root / 'images' / 'render' / f'render{num}.png'), img[..., ::-1])
        cv2.imwrite(str(root / 'images' / 'clean' / f'clean{num}.png'), mask[..., ::-1])
        cv2.imwrite(str(root / 'images' / 'ground' / f'ground{num}.png'), mask[..., ::-1])
    return root
