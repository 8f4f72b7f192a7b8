"""Lunar data loader: dominant-channel mask classes, Kaggle layout incl. real_moon_images g_
masks, problem reporting (default skip + summary, strict raises), splits, resizing, augmentation."""
import cv2
import numpy as np
import pytest
import torch

from spacenav_perception.data import lunar_dataset as ld
from spacenav_perception.data.problems import DataError, DataProblems


def _write(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))


def _mask_rgb(h=24, w=36):
    """Sky band on top (darkened red), ground, a small rock (dim green), a large rock (blue)."""
    m = np.zeros((h, w, 3), np.uint8)
    m[:6] = (200, 10, 0)
    m[12:18, 4:12] = (0, 90, 10)
    m[10:20, 20:32] = (5, 0, 60)
    m[20:, :] = (20, 25, 30)          # dark, low-saturation ground far away
    return m


def _classes():
    c = np.zeros((24, 36), np.uint8)
    c[:6] = ld.SKY
    c[12:18, 4:12] = ld.SMALL_ROCK
    c[10:20, 20:32] = ld.LARGE_ROCK
    c[20:, :] = ld.GROUND
    return c


def _make_set(root, n=5, real=True):
    rng = np.random.default_rng(0)
    for i in range(1, n + 1):
        _write(root / 'images' / 'render' / f'render{i:04d}.png',
               rng.integers(0, 255, (24, 36, 3), dtype=np.uint8))
        _write(root / 'images' / 'clean' / f'clean{i:04d}.png', _mask_rgb())
        _write(root / 'images' / 'ground' / f'ground{i:04d}.png', _mask_rgb())
    if real:
        _write(root / 'real_moon_images' / 'PCAM1.png', rng.integers(0, 255, (24, 36, 3), dtype=np.uint8))
        _write(root / 'real_moon_images' / 'g_PCAM1.png', _mask_rgb())
    return root


def test_dominant_channel_classification_on_darkened_colours():
    rgb = np.array([[[0, 90, 10], [0, 0, 60], [80, 5, 5], [30, 30, 30], [0, 255, 0],
                     [255, 0, 0], [0, 0, 255], [0, 0, 0], [39, 0, 0]]], np.uint8)
    cls, unknown = ld.classify_mask(rgb)
    assert cls.tolist() == [[ld.SMALL_ROCK, ld.LARGE_ROCK, ld.SKY, ld.GROUND, ld.SMALL_ROCK,
                             ld.SKY, ld.LARGE_ROCK, ld.GROUND, ld.GROUND]]
    assert not unknown.any()
    # two near-equal strong channels: unknown -> ground by default, or the ignore index
    amb = np.array([[[120, 120, 0], [0, 200, 180], [200, 60, 0]]], np.uint8)
    cls, unknown = ld.classify_mask(amb)
    assert unknown.tolist() == [[True, True, False]]
    assert cls.tolist() == [[ld.GROUND, ld.GROUND, ld.SKY]]
    cls, _ = ld.classify_mask(amb, unknown_label=ld.IGNORE_INDEX)
    assert cls.tolist() == [[255, 255, ld.SKY]]
    assert np.array_equal(ld.classify_mask(_mask_rgb())[0], _classes())


def test_render_and_real_moon_images(tmp_path):
    root = _make_set(tmp_path)
    ds = ld.LunarDataset(root, sources=('render', 'real'))
    assert not ds.problems
    assert [s.name for s in ds.samples] == [f'render{i:04d}.png' for i in range(1, 6)] + ['PCAM1.png']
    real = ds.samples[-1]
    assert real.source == 'real' and real.mask.name == 'g_PCAM1.png'
    assert np.array_equal(ds.full_mask(len(ds) - 1), _classes())
    # ground masks instead of clean
    dsg = ld.LunarDataset(root, masks='ground')
    assert dsg.samples[0].mask.name == 'ground0001.png'
    with pytest.raises(ValueError):
        ld.LunarDataset(root, masks='other')


def test_without_real_folder(tmp_path):
    root = _make_set(tmp_path, real=False)
    ds = ld.LunarDataset(root, sources=('render', 'real'))
    assert len(ds) == 5 and not ds.problems
    assert len(ld.LunarDataset(root, sources=('real',))) == 0


def test_problems_are_skipped_and_summarised(tmp_path):
    root = _make_set(tmp_path)
    (root / 'images' / 'clean' / 'clean0002.png').unlink()                        # missing mask
    (root / 'images' / 'render' / 'render0003.png').write_bytes(b'not a png')    # unreadable
    _write(root / 'real_moon_images' / 'PCAM2.png', np.zeros((24, 36, 3), np.uint8))  # no g_ mask
    bad = _mask_rgb()
    bad[0, 0] = (150, 140, 0)                                                      # unknown colour
    _write(root / 'images' / 'clean' / 'clean0004.png', bad)
    ds = ld.LunarDataset(root, sources=('render', 'real'))
    assert [s.name for s in ds.samples] == ['render0001.png', 'render0004.png', 'render0005.png',
                                           'PCAM1.png']
    counts = ds.problems.counts()
    assert counts == {'missing_mask': 2, 'unreadable_image': 1}
    m = ds.full_mask(1)
    assert m[0, 0] == ld.GROUND
    assert ds.problems.counts()['unknown_mask_colour'] == 1
    ds.full_mask(1)                       # reported once per mask
    assert ds.problems.counts()['unknown_mask_colour'] == 1
    text = ds.problems.summary()
    assert 'clean0004.png' in text and 'render0003.png' in text and 'PCAM2.png' in text
    # a file that passes the signature check but does not decode: reported, next item served
    (root / 'images' / 'render' / 'render0001.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 40)
    x, y = ds[0]
    assert x.shape == (3, 24, 36)
    assert any('render0001.png' in str(p) for p in ds.problems.by_kind('unreadable_image'))


def test_strict_raises(tmp_path):
    root = _make_set(tmp_path)
    (root / 'images' / 'clean' / 'clean0002.png').unlink()
    with pytest.raises(DataError) as e:
        ld.LunarDataset(root, strict=True)
    assert e.value.problem.kind == 'missing_mask'
    root2 = _make_set(tmp_path / 'b')
    bad = _mask_rgb()
    bad[3, 3] = (0, 130, 128)
    _write(root2 / 'images' / 'clean' / 'clean0001.png', bad)
    ds = ld.LunarDataset(root2, strict=True)
    with pytest.raises(DataError):
        ds[0]
    ds2 = ld.LunarDataset(root2, problems=DataProblems(strict=False))
    ds2[0]
    assert ds2.problems.counts() == {'unknown_mask_colour': 1}


def test_splits_are_deterministic_and_disjoint(tmp_path):
    root = _make_set(tmp_path, n=20, real=False)
    a = ld.split_samples(ld.find_samples(root), 0.2, 0.1, seed=3)
    b = ld.split_samples(list(reversed(ld.find_samples(root))), 0.2, 0.1, seed=3)
    assert a == b
    assert (len(a['train']), len(a['val']), len(a['test'])) == (14, 4, 2)
    names = [s.name for part in a.values() for s in part]
    assert sorted(names) == sorted(set(names)) and len(names) == 20
    tr = ld.LunarDataset(root, split='train', val_frac=0.2, test_frac=0.1, seed=3)
    assert tr.samples == a['train']
    c = ld.split_samples(ld.find_samples(root), 0.2, 0.1, seed=4)
    assert c != a


def test_items_resized_types_and_full_resolution(tmp_path):
    root = _make_set(tmp_path)
    ds = ld.LunarDataset(root, size=(12, 18), cache=True)
    x, y = ds[0]
    assert x.dtype == torch.float32 and x.shape == (3, 12, 18)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert y.dtype == torch.long and y.shape == (12, 18)
    assert set(y.unique().tolist()) <= {0, 1, 2, 3}
    # nearest-neighbour mask resize: exactly the full mask sampled at the kept pixels
    full = ds.full_mask(0)
    assert full.shape == (24, 36)
    assert np.array_equal(y.numpy(), cv2.resize(full, (18, 12), interpolation=cv2.INTER_NEAREST_EXACT))
    assert 0 in ds.cache
    g, _ = ld.LunarDataset(root, size=(12, 18), channels=1)[0]
    assert g.shape == (1, 12, 18)
    fr = ds.class_fractions()
    assert fr.shape == (4,) and fr.sum() == pytest.approx(1.0)


def test_augment_keeps_mask_aligned_and_sky_up():
    # image encodes the class: value 60 * class, so alignment can be checked after augmenting
    cls = np.kron(np.array([[3, 3, 3, 3], [0, 1, 0, 2], [2, 0, 1, 0]], np.uint8), np.ones((16, 16), np.uint8))
    img = np.repeat((cls * 60)[:, :, None], 3, axis=2).astype(np.uint8)
    photometric_off = dict(p_gain=0, p_gamma=0, p_noise=0, p_blur=0)
    flip = ld.LunarAugment(p_hflip=1.0, p_crop=0.0, **photometric_off)
    i2, m2 = flip(img, cls, np.random.default_rng(0))
    assert np.array_equal(m2, cls[:, ::-1]) and np.array_equal(i2[:, :, 0], (m2 * 60))
    crop = ld.LunarAugment(p_hflip=0.0, p_crop=1.0, min_scale=0.6, **photometric_off)
    for s in range(5):
        i3, m3 = crop(img, cls, np.random.default_rng(s))
        assert i3.shape == img.shape and m3.shape == cls.shape
        v = i3[:, :, 0]
        k = np.ones((3, 3), np.uint8)
        interior = cv2.dilate(v, k) == cv2.erode(v, k)     # away from blended block edges
        assert interior.mean() > 0.6
        assert np.array_equal(m3[interior].astype(int) * 60, v[interior].astype(int))
    # defaults: never a vertical flip, so sky (top band of the source) never reaches the bottom
    default = ld.LunarAugment()
    for s in range(30):
        _, m4 = default(img, cls, np.random.default_rng(s))
        assert not np.any(m4[-1] == ld.SKY)
    _, m5 = ld.LunarAugment(p_vflip=1.0, p_crop=0.0)(img, cls, np.random.default_rng(0))
    assert np.all(m5[-1] == ld.SKY)


def test_renderer_output_loads(tmp_path):
    from spacenav_perception.synth import lunar
    lunar.render_dataset(tmp_path, 2, seed=1, width=72, height=48, device='cpu', progress=False,
                         workers=1)
    ds = ld.LunarDataset(tmp_path, masks='ground', strict=True)
    assert len(ds) == 2
    _, ground, _, _ = lunar.render_scene(lunar.image_rng(1, 0), 72, 48, 'cpu')
    assert np.array_equal(ds.full_mask(0), ground)


def test_class_pixel_counts_frame_by_frame_equals_one_bincount():
    from spacenav_perception.training.segmentation_task import class_pixel_counts
    labels = np.random.default_rng(5).integers(0, 4, (7, 12, 18), dtype=np.uint8)
    np.testing.assert_array_equal(class_pixel_counts(labels),
                                  np.bincount(labels.reshape(-1), minlength=4))
    labels[3, 2, 2] = 9
    with pytest.raises(ValueError, match='class id 9'):
        class_pixel_counts(labels)
