"""Asteroid renderer: determinism, data set files, and the centre-of-mass label."""
import csv
import math

import numpy as np
import pytest

from spacenav_perception.synth import asteroid as A

SMALL = 96


def _read(path):
    with open(path, newline='') as fh:
        return list(csv.DictReader(fh))


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    a, b, c = tmp_path / 'a', tmp_path / 'b', tmp_path / 'c'
    A.render_dataset(a, 2, seed=5, size=SMALL, device='cpu', progress=False)
    A.render_dataset(b, 2, seed=5, size=SMALL, device='cpu', progress=False)
    A.render_dataset(c, 2, seed=6, size=SMALL, device='cpu', progress=False)
    for name in ('asteroid_000000.png', 'asteroid_000001.png'):
        assert (a / 'images' / name).read_bytes() == (b / 'images' / name).read_bytes()
        assert (a / 'images' / name).read_bytes() != (c / 'images' / name).read_bytes()
    assert (a / 'labels.csv').read_bytes() == (b / 'labels.csv').read_bytes()
    assert (a / 'labels.csv').read_bytes() != (c / 'labels.csv').read_bytes()


def test_frame_depends_only_on_seed_and_index(tmp_path):
    # rendering index 1 alone (start_index) gives the same frame as in a two-frame run,
    # and chunks merge into one labels.csv
    whole, part = tmp_path / 'whole', tmp_path / 'part'
    A.render_dataset(whole, 2, seed=3, size=SMALL, device='cpu', progress=False)
    A.render_dataset(part, 1, seed=3, size=SMALL, device='cpu', progress=False, start_index=1)
    A.render_dataset(part, 1, seed=3, size=SMALL, device='cpu', progress=False, start_index=0)
    name = 'asteroid_000001.png'
    assert (whole / 'images' / name).read_bytes() == (part / 'images' / name).read_bytes()
    assert (whole / 'labels.csv').read_text() == (part / 'labels.csv').read_text()


def test_csv_and_meta_format(tmp_path):
    A.render_dataset(tmp_path, 3, seed=11, size=SMALL, device='cpu', progress=False)
    import cv2
    with open(tmp_path / 'labels.csv', newline='') as fh:
        header = next(csv.reader(fh))
    assert header == ['image_name', 'x_coordinate', 'y_coordinate']
    labels = _read(tmp_path / 'labels.csv')
    meta = _read(tmp_path / 'meta.csv')
    assert [r['image_name'] for r in labels] == [f'asteroid_{i:06d}.png' for i in range(3)]
    assert [r['image_name'] for r in meta] == [r['image_name'] for r in labels]
    assert list(meta[0].keys()) == list(A.META_FIELDS)
    for lab, m in zip(labels, meta):
        x, y = float(lab['x_coordinate']), float(lab['y_coordinate'])
        assert math.isfinite(x) and math.isfinite(y)
        assert -0.5 <= x < SMALL - 0.5 and -0.5 <= y < SMALL - 0.5     # COM inside the image
        assert float(m['x_coordinate']) == x and float(m['y_coordinate']) == y
        assert 0 <= float(m['phase_deg']) <= A.PHASE_MAX_DEG
        assert 10 <= float(m['range_km']) <= 40
        assert m['cut_by_edge'] in ('0', '1') and m['moonlet_visible'] in ('0', '1')
        assert 0 < float(m['in_frame_fraction']) <= 1
        img = cv2.imread(str(tmp_path / 'images' / lab['image_name']), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint8 and img.shape == (SMALL, SMALL)


def test_interrupted_run_leaves_no_labels(tmp_path, monkeypatch):
    calls = {'n': 0}
    real = A.render_scene_with_silhouette

    def flaky(*args, **kwargs):
        calls['n'] += 1
        if calls['n'] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(A, 'render_scene_with_silhouette', flaky)
    with pytest.raises(KeyboardInterrupt):
        A.render_dataset(tmp_path, 3, seed=1, size=SMALL, device='cpu', progress=False)
    assert (tmp_path / 'images' / 'asteroid_000000.png').exists()
    assert not (tmp_path / 'labels.csv').exists()
    assert not list((tmp_path / 'images').glob('*.tmp'))


def test_silhouettes_cover_the_lit_body_and_centre_on_the_meta(tmp_path):
    import cv2
    A.render_dataset(tmp_path, 3, seed=21, size=SMALL, device='cpu', progress=False)
    meta = _read(tmp_path / 'meta.csv')
    for m in meta:
        sil = cv2.imread(str(tmp_path / 'silhouettes' / m['image_name']), cv2.IMREAD_UNCHANGED)
        assert sil.dtype == np.uint8 and sil.shape == (SMALL, SMALL)
        assert set(np.unique(sil)) <= {0, 255}
        assert int((sil > 0).sum()) == int(m['primary_px'])
        ys, xs = np.nonzero(sil)
        assert xs.mean() == pytest.approx(float(m['silhouette_x']), abs=1e-6)
        assert ys.mean() == pytest.approx(float(m['silhouette_y']), abs=1e-6)
    # without noise, stars or moonlet, every lit pixel lies on the silhouette (PSF blur spreads
    # light by a pixel or two: compare with a dilated silhouette), and the silhouette is larger
    # than the lit part at a high phase angle (night side)
    image, _, _, sil = A.render_scene_with_silhouette(
        (4, 0), SMALL, 'cpu', moonlet=False, phase_deg=100.0, cut=False,
        sensor={'noise': False, 'n_stars': 0, 'n_hot_pixels': 0, 'black_level_dn': 0.0})
    grown = cv2.dilate(sil.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    lit = image > 8
    assert lit.any() and not (lit & ~grown).any()
    assert sil.sum() > 1.5 * lit.sum()


def test_no_silhouettes_when_asked(tmp_path):
    A.render_dataset(tmp_path, 1, seed=2, size=SMALL, device='cpu', progress=False,
                     silhouettes=False)
    assert not (tmp_path / 'silhouettes').exists()
    assert (tmp_path / 'labels.csv').is_file()


def test_parallel_chunk_processes_keep_each_others_rows(tmp_path):
    # what `spacenav synth asteroid --start-index` advises: several processes, one directory
    import subprocess
    import sys
    code = ('import sys; from spacenav_perception.synth import asteroid as A; '
            'A.render_dataset(sys.argv[1], 2, seed=9, size=48, device="cpu", progress=False, '
            'start_index=int(sys.argv[2]))')
    procs = [subprocess.Popen([sys.executable, '-c', code, str(tmp_path), str(k)])
             for k in (0, 2, 4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    names = [r['image_name'] for r in _read(tmp_path / 'labels.csv')]
    assert names == [f'asteroid_{i:06d}.png' for i in range(6)]
    assert [r['image_name'] for r in _read(tmp_path / 'meta.csv')] == names


def _clean_sensor():
    return {'noise': False, 'n_stars': 0, 'n_hot_pixels': 0, 'black_level_dn': 0.0,
            'peak_fraction': 0.9}


def test_symmetric_body_label_is_projected_centre_and_silhouette_centre():
    # smooth spinning top seen along its spin axis, no moonlet, zero phase, no noise: the image
    # is symmetric about the centre of mass, so the label (the requested pixel) must coincide
    # with the silhouette and brightness centroids. (Seen obliquely, perspective shifts the
    # silhouette centre away from the projected centre even for a symmetric body.)
    com = (61.3, 50.7)
    img, (x, y), meta = A.render_scene(
        0, 128, 'cpu', perturb=False, moonlet=False, phase_deg=0.0, range_km=12.0,
        com_px=com, primary_rotation=np.eye(3), view_dir=(0.0, 0.0, 1.0),
        sensor=_clean_sensor())
    assert (x, y) == pytest.approx(com, abs=1e-6)
    assert meta['com_offset_m'] == pytest.approx(0.0, abs=1e-6)
    assert meta['cut_by_edge'] == 0 and meta['in_frame_fraction'] == 1.0
    assert meta['silhouette_x'] == pytest.approx(x, abs=0.05)
    assert meta['silhouette_y'] == pytest.approx(y, abs=0.05)
    w = img.astype(np.float64)
    yy, xx = np.mgrid[:img.shape[0], :img.shape[1]]
    assert (w * xx).sum() / w.sum() == pytest.approx(x, abs=0.05)
    assert (w * yy).sum() / w.sum() == pytest.approx(y, abs=0.05)


def test_silhouette_matches_brute_force_ray_test():
    # the renderer's silhouette equals an independent dense ray test of the same shape in the
    # project's pixel convention (any orientation, perturbed shape)
    size = 48
    rng = np.random.default_rng(np.random.SeedSequence([9, 0]))
    scene = A.sample_scene(rng, size, moonlet=False, range_km=10.0, com_px=(22.3, 25.8))
    sil = A.render_radiance(scene, 'cpu')['primary_silhouette'].numpy()
    prim = scene.primary
    yy, xx = np.mgrid[:size, :size]
    d = np.stack([(xx - scene.centre) / scene.focal, (yy - scene.centre) / scene.focal,
                  np.ones_like(xx, dtype=float)], -1).reshape(-1, 3)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    d_b = d @ scene.cam_R @ prim.R                   # camera -> world -> body
    o_b = (scene.cam_C - prim.X) @ prim.R
    dist = np.linalg.norm(o_b)
    rmax = prim.shape.radius.max()
    ts = np.arange(dist - rmax, dist + rmax, 0.25)
    brute = np.zeros(size * size, bool)
    for i in range(size * size):
        pts = o_b[None] + ts[:, None] * d_b[i][None]
        brute[i] = prim.shape.contains(pts).any()
    brute = brute.reshape(size, size)
    assert brute.sum() > 300
    assert (brute != sil).sum() <= 2
    ys, xs = np.nonzero(sil)
    yb, xb = np.nonzero(brute)
    assert xs.mean() == pytest.approx(xb.mean(), abs=0.02)
    assert ys.mean() == pytest.approx(yb.mean(), abs=0.02)


def test_ellipsoid_volume_and_centroid_exact():
    a, b, c = 300.0, 250.0, 200.0
    lat, lon, u = A._grid_directions(181, 360)
    r = 1.0 / np.sqrt((u[..., 0] / a) ** 2 + (u[..., 1] / b) ** 2 + (u[..., 2] / c) ** 2)
    vol, com = A.RadialShape(r).volume_and_centroid()
    assert vol == pytest.approx(4 / 3 * math.pi * a * b * c, rel=2e-4)
    assert np.abs(com).max() < 1e-6


def test_perturbed_centroid_matches_voxel_estimate():
    rng = np.random.default_rng(123)
    shape, _ = A.build_primary(rng, n_lat=129, n_lon=256)
    com = shape.centroid
    assert np.linalg.norm(com) > 1.0        # the perturbations really move the centre of mass
    h = 6.0
    ax = np.arange(-540.0, 540.0, h) + h / 2
    acc, n = np.zeros(3), 0
    for zc in np.array_split(ax, 12):       # voxel centres, chunked to keep memory small
        X, Y, Z = np.meshgrid(ax, ax, zc, indexing='ij')
        p = np.stack([X.ravel(), Y.ravel(), Z.ravel()], 1)
        inside = shape.contains(p)
        acc += p[inside].sum(0)
        n += int(inside.sum())
    vol, _ = shape.volume_and_centroid()
    assert n * h ** 3 == pytest.approx(vol, rel=3e-3)
    np.testing.assert_allclose(acc / n, com, atol=0.1)


def test_label_is_projected_centre_of_mass_not_silhouette():
    img, (x, y), meta = A.render_scene((4, 2), 128, 'cpu', moonlet=False, range_km=10.0,
                                       cut=False)
    rng = np.random.default_rng(np.random.SeedSequence([4, 2]))
    scene = A.sample_scene(rng, 128, moonlet=False, range_km=10.0, cut=False)
    prim = scene.primary
    com_world = prim.X + prim.R @ prim.shape.centroid
    np.testing.assert_allclose(com_world, 0.0, atol=1e-9)
    assert scene.project(com_world) == pytest.approx((x, y), abs=1e-9)
    # the body origin (not its centre of mass) projects elsewhere by the COM offset
    ox, oy = scene.project(prim.X)
    assert math.hypot(ox - x, oy - y) > 0.01



@pytest.mark.parametrize('defocus', [0.0, 1.2])
def test_psf_blur_backends_agree(defocus):
    import torch
    from spacenav_perception.synth import sensor
    img = torch.zeros(40, 50)
    img[10, 7] = 1.0
    img[30, 40] = 2.0
    a = sensor.blur(img, 1.1, defocus, backend='cv2')
    b = sensor.blur(img, 1.1, defocus, backend='torch')
    assert torch.allclose(a, b, atol=1e-6)
    assert float(a.sum()) == pytest.approx(3.0, rel=1e-5)
