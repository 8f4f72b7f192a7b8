"""Asteroid data set loader, data problems, deterministic splits and label-exact augmentation."""
import numpy as np
import pytest
import cv2

from spacenav_perception.data import augment as aug
from spacenav_perception.data.asteroid_dataset import (
    AsteroidDataset, read_index, scale_label, split_records, unscale_label)
from spacenav_perception.data.problems import DataError, DataProblems


def _write_set(root, rows, images):
    (root / 'images').mkdir(parents=True, exist_ok=True)
    for name, arr in images.items():
        if isinstance(arr, bytes):
            (root / 'images' / name).write_bytes(arr)
        else:
            cv2.imwrite(str(root / 'images' / name), arr)
    lines = ['image_name,x_coordinate,y_coordinate'] + rows
    (root / 'labels.csv').write_text('\n'.join(lines) + '\n')


def _dot(h, w, x, y, dtype=np.uint8, value=None):
    img = np.zeros((h, w), dtype)
    img[y, x] = value if value is not None else np.iinfo(dtype).max
    return img


@pytest.fixture
def messy(tmp_path):
    good = _dot(40, 60, 10, 20)
    deep = _dot(40, 60, 30, 5, np.uint16, 40000)
    png = cv2.imencode('.png', good)[1].tobytes()
    _write_set(tmp_path, [
        'a.png,10,20',
        'b16.png,30,5',
        'missing.png,1,2',
        'c.png,abc,3',
        'garbage.png,4,4',
        'truncated.png,5,5',
        'a.png,1,1',
        'd.png,100,5',
    ], {'a.png': good, 'b16.png': deep, 'garbage.png': b'not a png at all, really not',
        'truncated.png': png[:60], 'c.png': good, 'd.png': good})
    return tmp_path


def test_problems_are_collected_and_summarised(messy):
    records, problems = read_index(messy)
    assert [r.name for r in records] == ['a.png', 'b16.png', 'truncated.png']
    counts = problems.counts()
    assert counts == {'missing_image': 1, 'bad_row': 2, 'unreadable_image': 1,
                      'label_outside_image': 1}
    text = problems.summary()
    for needle in ('missing.png', 'garbage.png', 'abc', 'duplicate', 'd.png', 'bad_row: 2'):
        assert needle in text
    # the truncated PNG has a valid header: decoding it is reported when it is loaded
    ds = AsteroidDataset(records=records, input_size=20, problems=problems)
    with pytest.raises(DataError):
        ds[2]
    assert problems.counts()['unreadable_image'] == 2


def test_strict_raises_at_first_problem(messy):
    with pytest.raises(DataError) as err:
        read_index(messy, strict=True)
    assert err.value.problem.kind == 'missing_image'
    with pytest.raises(DataError):
        AsteroidDataset(messy, strict=True)


def test_missing_labels_file_is_a_problem(tmp_path):
    records, problems = read_index(tmp_path)
    assert records == [] and problems.counts() == {'missing_file': 1}
    p = DataProblems()
    assert 'none' in p.summary() and not p


def test_8_and_16_bit_images_and_label_scaling(messy):
    records, _ = read_index(messy)
    ds = AsteroidDataset(records=records[:2], input_size=(30, 20), cache=True)
    item = ds[1]
    assert item['image'].shape == (1, 20, 30)
    assert item['image'].dtype.is_floating_point
    assert float(item['image'].max()) == pytest.approx(40000 / 65535 / 4, rel=1e-3)  # 2x2 area
    assert item['size_full'].tolist() == [60, 40]
    assert item['label_full'].tolist() == [30.0, 5.0]
    assert item['label'].tolist() == pytest.approx([(30 + 0.5) * 0.5 - 0.5, (5 + 0.5) * 0.5 - 0.5])
    thesis = AsteroidDataset(records=records[:2], input_size=(30, 20), thesis_scaling=True)
    assert thesis[1]['label'].tolist() == pytest.approx([15.0, 2.5])
    # 8-bit: the bright pixel keeps its place after an exact 2x area resize
    a = ds[0]
    img = a['image'][0].numpy()
    iy, ix = np.unravel_index(img.argmax(), img.shape)
    assert abs(ix - a['label'][0].item()) <= 0.5 and abs(iy - a['label'][1].item()) <= 0.5
    assert ds.cache and len(ds.cache) == 2
    x, y = unscale_label(*scale_label(7.0, 9.0, 60, 40, 30, 20), 60, 40, 30, 20)
    assert (x, y) == pytest.approx((7.0, 9.0))


def test_splits_are_deterministic_disjoint_and_complete(messy):
    records, _ = read_index(messy, check_headers=False)
    recs = records * 1
    many = [type(r)(f'{i:03d}.png', r.path, 0, 0) for i, r in enumerate(recs * 10)]
    s1 = split_records(many, (0.7, 0.2, 0.1), seed=4)
    s2 = split_records(list(reversed(many)), (0.7, 0.2, 0.1), seed=4)
    s3 = split_records(many, (0.7, 0.2, 0.1), seed=5)
    names = [[r.name for r in part] for part in s1]
    assert names == [[r.name for r in part] for part in s2]
    assert names != [[r.name for r in part] for part in s3]
    flat = sum(names, [])
    assert sorted(flat) == sorted(r.name for r in many) and len(set(flat)) == len(flat)
    assert [len(p) for p in s1] == [round(0.7 * len(many)), round(0.9 * len(many)) -
                                    round(0.7 * len(many)), len(many) - round(0.9 * len(many))]


OPS = [
    ('hflip', lambda im, p, m: aug.hflip(im, p, m)),
    ('vflip', lambda im, p, m: aug.vflip(im, p, m)),
    ('shift', lambda im, p, m: aug.shift(im, 5, -3, p, m)),
    ('crop', lambda im, p, m: aug.crop(im, -4, 6, 25, 30, p, m)),
]


@pytest.mark.parametrize('name,op', OPS)
def test_geometric_ops_move_points_and_masks_exactly(name, op):
    img = _dot(31, 45, 17, 12)
    mask = (img > 0).astype(np.uint8) * 3
    out, pts, m = op(img, np.array([[17.0, 12.0]]), mask)
    iy, ix = np.unravel_index(out.argmax(), out.shape)
    assert (ix, iy) == (pts[0, 0], pts[0, 1])
    assert np.array_equal(m > 0, out > 0) and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 3}


@pytest.mark.parametrize('k', [0, 1, 2, 3])
def test_rot90_moves_points_exactly(k):
    img = _dot(32, 32, 5, 9)
    out, pts, m = aug.rot90(img, k, np.array([[5.0, 9.0]]), img.copy())
    iy, ix = np.unravel_index(out.argmax(), out.shape)
    assert (ix, iy) == (pts[0, 0], pts[0, 1])
    assert np.array_equal(m, out)
    rect = _dot(20, 30, 3, 4)
    out, pts, _ = aug.rot90(rect, k, np.array([[3.0, 4.0]]))
    iy, ix = np.unravel_index(out.argmax(), out.shape)
    assert (ix, iy) == (pts[0, 0], pts[0, 1])


def test_random_augmenter_is_seeded_and_label_exact():
    a = aug.Augmenter(p_flip=0.5, p_rot90=0.7, p_shift=0.9, p_gain=0, p_gamma=0, p_noise=0,
                      p_blur=0)
    img = _dot(40, 40, 33, 6).astype(np.float32) / 255.0
    for seed in range(30):
        out, pts, mask = a(img, np.array([[33.0, 6.0]]), (img > 0).astype(np.uint8),
                           rng=np.random.default_rng(seed))
        iy, ix = np.unravel_index(out.argmax(), out.shape)
        assert (ix, iy) == (pts[0, 0], pts[0, 1]) and mask[iy, ix] == 1
        again = a(img, np.array([[33.0, 6.0]]), None, rng=np.random.default_rng(seed))
        assert np.array_equal(again[0], out) and np.array_equal(again[1], pts)


def test_photometric_ops_keep_dtype_and_range():
    rng = np.random.default_rng(0)
    for img in (rng.integers(0, 256, (16, 16)).astype(np.uint8),
                rng.integers(0, 65536, (16, 16)).astype(np.uint16),
                rng.random((16, 16)).astype(np.float32)):
        for out in (aug.gain(img, 1.3), aug.gamma(img, 0.8), aug.add_noise(img, 0.02, rng),
                    aug.gaussian_blur(img, 1.0)):
            assert out.dtype == img.dtype and out.shape == img.shape
            if img.dtype == np.float32:
                assert out.min() >= 0 and out.max() <= 1


def test_dataset_over_rendered_frames(tmp_path):
    from spacenav_perception.synth.asteroid import render_dataset
    render_dataset(tmp_path, 2, seed=1, size=64, device='cpu', progress=False)
    records, problems = read_index(tmp_path)
    assert len(records) == 2 and not problems
    assert 'phase_deg' in records[0].meta
    ds = AsteroidDataset(tmp_path, input_size=32, with_meta=True,
                         augment=aug.Augmenter(p_gain=0, p_gamma=0, p_noise=0, p_blur=0))
    item = ds[0]
    assert item['image'].shape == (1, 32, 32)
    lx, ly = item['label'].tolist()
    fx, fy = item['label_full'].tolist()
    assert (lx, ly) == pytest.approx(scale_label(fx, fy, 64, 64, 32, 32), abs=1e-4)
    assert 'phase_deg' in item['meta']
