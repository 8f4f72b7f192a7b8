"""Lunar renderer: determinism, Kaggle layout and palette, clean vs ground masks, occlusion,
cast shadows labelled ground, pitched-down views without sky. Small images keep it fast."""
import csv
import math

import cv2
import numpy as np
import pytest

from spacenav_perception.synth import lunar

W, H = 96, 64


def _read_rgb(path):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img[:, :, ::-1]


@pytest.fixture(scope='module')
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp('lunar')
    lunar.render_dataset(out, 3, seed=7, width=W, height=H, device='cpu', progress=False, workers=1)
    return out


def test_same_seed_same_bytes(small_set, tmp_path):
    # rendered in two chunks (start_index) into another folder: identical files
    lunar.render_dataset(tmp_path, 1, seed=7, width=W, height=H, device='cpu', progress=False,
                         workers=1)
    lunar.render_dataset(tmp_path, 2, seed=7, width=W, height=H, device='cpu', progress=False,
                         workers=1, start_index=1)
    for kind in ('render', 'ground', 'clean'):
        for i in (1, 2, 3):
            name = f'{kind}{i:04d}.png'
            a = (small_set / 'images' / kind / name).read_bytes()
            b = (tmp_path / 'images' / kind / name).read_bytes()
            assert a == b, name
    assert (small_set / 'meta.csv').read_text() == (tmp_path / 'meta.csv').read_text()


def test_different_seed_differs():
    a = lunar.render_scene(lunar.image_rng(1, 0), W, H, 'cpu')[0]
    b = lunar.render_scene(lunar.image_rng(2, 0), W, H, 'cpu')[0]
    assert a.shape == (H, W, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, b)


def test_layout_palette_and_meta(small_set):
    names = sorted(p.name for p in (small_set / 'images' / 'render').iterdir())
    assert names == ['render0001.png', 'render0002.png', 'render0003.png']
    palette = {tuple(c) for c in lunar.PALETTE.tolist()}
    for i in (1, 2, 3):
        img = _read_rgb(small_set / 'images' / 'render' / f'render{i:04d}.png')
        assert img.shape == (H, W, 3)
        for kind in ('ground', 'clean'):
            m = _read_rgb(small_set / 'images' / kind / f'{kind}{i:04d}.png')
            assert m.shape == (H, W, 3)
            colours = {tuple(c) for c in np.unique(m.reshape(-1, 3), axis=0).tolist()}
            assert colours <= palette, colours
    assert not list(small_set.rglob('*.tmp*'))
    with open(small_set / 'meta.csv', newline='') as fh:
        rows = list(csv.DictReader(fh))
    assert [r['image_name'] for r in rows] == names
    assert set(lunar.META_FIELDS) <= set(rows[0])
    for r in rows:
        assert int(r['width']) == W and int(r['height']) == H
        assert 3 <= float(r['sun_elevation_deg']) <= 25
        fr = sum(float(r[k]) for k in ('frac_ground', 'frac_small_rock', 'frac_large_rock', 'frac_sky'))
        assert fr == pytest.approx(1.0, abs=1e-4)


def test_masks_lossless_and_match_render_scene(small_set):
    rgb, ground, clean, meta = lunar.render_scene(lunar.image_rng(7, 1), W, H, 'cpu')
    assert np.array_equal(_read_rgb(small_set / 'images' / 'render' / 'render0002.png'), rgb)
    assert np.array_equal(_read_rgb(small_set / 'images' / 'ground' / 'ground0002.png'),
                          lunar.colorize(ground))
    assert np.array_equal(_read_rgb(small_set / 'images' / 'clean' / 'clean0002.png'),
                          lunar.colorize(clean))


def test_clean_only_relabels_small_area_rocks_to_ground():
    rgb, ground, clean, meta = lunar.render_scene(lunar.image_rng(3, 0), 180, 120, 'cpu')
    changed = ground != clean
    assert np.all(clean[changed] == lunar.GROUND)
    assert np.all(np.isin(ground[changed], (lunar.SMALL_ROCK, lunar.LARGE_ROCK)))
    rid = meta['rock_id']
    min_px = lunar.min_rock_pixels(180, 120)
    areas = np.bincount(rid[rid >= 0])
    assert changed.any(), 'expected some tiny rocks at 180x120'
    for r in np.unique(rid[changed]):
        assert areas[r] < min_px
    kept = (rid >= 0) & ~changed
    for r in np.unique(rid[kept]):
        assert areas[r] >= min_px
    assert np.array_equal(ground == lunar.SKY, clean == lunar.SKY)


LEVEL_CAMERA = {'yaw_deg': 0.0, 'pitch_deg': 0.0, 'roll_deg': 0.0, 'height': 1.0, 'hfov_deg': 60.0}


def test_occlusion_nearest_surface_and_rock_in_front_of_horizon():
    # rock A (2 m across) at 5 m in front of a bigger rock B at 12 m; both rise above the
    # horizon of a level camera 1 m above flat ground
    ov = {'flat': True, 'noise': False, 'camera': LEVEL_CAMERA, 'rocks': [(5.0, 0.0, 2.0), (12.0, 0.0, 4.0)],
          'rock_bury': 0.3, 'rock_axes': (1.0, 0.8), 'single_lobe': True,
          'sun_elevation_deg': 15.0, 'sun_azimuth_deg': 150.0}
    w, h = 160, 120
    rgb, ground, clean, meta = lunar.render_scene(0, w, h, 'cpu', overrides=ov)
    rid, depth = meta['rock_id'], meta['depth']
    col = w // 2
    horizon_row = h // 2 - 1       # level camera: the row just above the horizon (image centre)
    # there, the rock column is rock (large), the image edges are sky
    assert ground[horizon_row, col] == lunar.LARGE_ROCK
    assert ground[horizon_row, 2] == lunar.SKY and ground[horizon_row, w - 3] == lunar.SKY
    # centre column from top: sky, B, A, then ground; A (nearer) hides B's lower part
    ids = rid[:, col]
    first_b = np.argmax(ids == 1)
    first_a = np.argmax(ids == 0)
    assert ground[0, col] == lunar.SKY
    assert 0 < first_b < first_a
    # B's base would appear at atan(1 / 12) below the horizon, far under A's top: occluded there
    fx = (w / 2) / math.tan(math.radians(30))
    b_base_row = (h / 2 - 0.5) + fx * (1.0 / 12.0)
    assert ids[int(b_base_row) - 1] == 0
    assert np.all(depth[rid == 0] < depth[rid == 1].min())
    assert np.all(ground[rid >= 0] == lunar.LARGE_ROCK)
    # bottom rows: flat ground in front of A
    assert ground[-1, col] == lunar.GROUND and np.isfinite(depth[-1, col])


def test_cast_shadow_is_darker_and_labelled_ground():
    cam = dict(LEVEL_CAMERA, pitch_deg=-12.0, height=1.5)
    base = {'flat': True, 'noise': False, 'camera': cam, 'sun_elevation_deg': 10.0,
            'sun_azimuth_deg': 80.0, 'rock_bury': 0.0, 'rock_axes': (1.0, 0.7), 'single_lobe': True}
    w, h = 160, 120
    rgb, ground, _, meta = lunar.render_scene(0, w, h, 'cpu', overrides=dict(base, rocks=[(7.0, 0.0, 1.2)]))
    rgb0, ground0, _, meta0 = lunar.render_scene(0, w, h, 'cpu', overrides=dict(base, rocks=[]))
    lum = rgb.astype(np.float64).mean(axis=2)
    shadow = (~meta['lit']) & (ground == lunar.GROUND) & np.isfinite(meta['depth'])
    assert shadow.sum() > 30, 'the rock should cast a visible shadow on the ground'
    # flat terrain: without the rock these pixels are sunlit ground
    assert np.all(meta0['lit'][shadow]) and np.all(ground0[shadow] == lunar.GROUND)
    lit_ground = meta['lit'] & (ground == lunar.GROUND)
    assert lum[shadow].mean() < 0.5 * lum[lit_ground].mean()
    # shadow pixels are never rock labels
    assert not np.any(np.isin(ground[shadow], (lunar.SMALL_ROCK, lunar.LARGE_ROCK)))


def test_some_views_pitched_down_without_sky():
    rng = np.random.default_rng(0)
    cams = [lunar.sample_camera(rng, 720, 480) for _ in range(400)]
    down = [c for c in cams if c.pitch_deg < -20]
    assert 0.1 < len(down) / len(cams) < 0.3
    assert all(1.0 <= c.height <= 3.0 and 50 <= c.hfov_deg <= 70 for c in cams)
    cam = down[0]
    ov = {'camera': {k: getattr(cam, k) for k in ('yaw_deg', 'pitch_deg', 'roll_deg', 'height',
                                                   'hfov_deg')}}
    _, ground, _, meta = lunar.render_scene(5, W, H, 'cpu', overrides=ov)
    assert not np.any(ground == lunar.SKY) and meta['has_sky'] == 0


def test_large_rock_rule_is_protrusion_height():
    rng = np.random.default_rng(0)
    x = np.zeros(4)
    diam = np.array([0.3, 0.5, 0.9, 2.0])
    _, _, _, owner, protrusion, _ = lunar._build_rocks(rng, x, x, diam, np.zeros(4), buried=0.0,
                                                       axes=(1.0, 0.5), single_lobe=True)
    # a single lobe centred on the ground: protrusion = its vertical extent, the vertical
    # semi-axis c = diam / 4 grown by the tilt (<= 20 deg) to at most sqrt((2c sin20)^2 + c^2)
    c = diam / 4
    assert np.all(protrusion >= c - 1e-9) and np.all(protrusion <= 1.22 * c)
    cls = np.where(protrusion >= lunar.LARGE_ROCK_HEIGHT_M, lunar.LARGE_ROCK, lunar.SMALL_ROCK)
    assert cls.tolist() == [lunar.SMALL_ROCK, lunar.SMALL_ROCK, lunar.SMALL_ROCK, lunar.LARGE_ROCK]


def test_parallel_chunk_processes_keep_each_others_meta_rows(tmp_path):
    import subprocess
    import sys
    code = ('import sys; from spacenav_perception.synth import lunar; '
            f'lunar.render_dataset(sys.argv[1], 1, seed=4, width={W}, height={H}, device="cpu", '
            'progress=False, workers=1, start_index=int(sys.argv[2]))')
    procs = [subprocess.Popen([sys.executable, '-c', code, str(tmp_path), str(k)])
             for k in (0, 1, 2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    with open(tmp_path / 'meta.csv', newline='') as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r['index']) for r in rows] == [0, 1, 2]
