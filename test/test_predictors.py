"""Predictors with the analytic reference models, preprocessing, safe site, bearing, latency."""
import threading

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spacenav_perception.core.bearing import bearing_from_pixel
from spacenav_perception.core.centroid_predictor import CentroidPredictor
from spacenav_perception.core.engine import InferenceEngine
from spacenav_perception.core.image_codec import image_to_array
from spacenav_perception.core.latency import LatencyWindow
from spacenav_perception.core.manifest import InputSpec, ModelManifest
from spacenav_perception.core.preprocess import Preprocessor
from spacenav_perception.core.safe_site import SafeSiteFinder, largest_safe_disc, scale_site
from spacenav_perception.core.segmentation_predictor import (SegmentationPredictor,
                                                             torch_class_map)
from spacenav_perception.nets.reference import (expected_classes, export_reference_model,
                                                reference_logits)

H, W = 40, 56          # full-resolution test images
RNG = np.random.default_rng(11)


def blob(h=H, w=W, cx=31.3, cy=17.8, sigma=4.0):
    """A smooth off-centre blob in [0, 1]."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2))


def analytic_centroid(intensity):
    intensity = intensity.astype(np.float64)
    yy, xx = np.mgrid[0:intensity.shape[0], 0:intensity.shape[1]]
    total = intensity.sum()
    return (intensity * xx).sum() / total, (intensity * yy).sum() / total


def as_encoding(f, encoding):
    """(image array in `encoding`, the intensity the model sees) for float intensities f."""
    if encoding == 'mono8':
        a = np.rint(f * 255).astype(np.uint8)
        return a, a / 255.0
    if encoding == 'mono16':
        a = np.rint(f * 65535).astype(np.uint16)
        big = a.astype('>u2')       # travel as a big-endian frame through the codec
        a = image_to_array('mono16', H, W, W * 2, 1, big.tobytes())
        return a, a.astype(np.float64) / 65535.0
    if encoding == 'rgb8':
        g = np.rint(f * 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2), g / 255.0
    if encoding == '32FC1':
        a = f.astype(np.float32)
        return a, a
    raise AssertionError(encoding)


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp('refmodels')


@pytest.fixture(scope='module')
def centroid_engine(model_dir):
    return InferenceEngine(export_reference_model('centroid', model_dir, H, W), device='cpu')


@pytest.mark.parametrize('encoding', ['mono8', 'mono16', 'rgb8', '32FC1'])
def test_centroid_matches_analytic(centroid_engine, encoding):
    image, seen = as_encoding(blob(), encoding)
    result = CentroidPredictor(centroid_engine).predict(image, encoding)
    ax, ay = analytic_centroid(seen)
    assert abs(result.x - ax) < 0.05 and abs(result.y - ay) < 0.05
    assert result.in_view and result.confidence > 0.99


def test_centroid_from_downscaled_model_input(model_dir):
    """Image twice the model size with constant 2x2 blocks: the area resize loses nothing."""
    engine = InferenceEngine(export_reference_model('centroid', model_dir / 'half', H // 2,
                                                    W // 2), device='cpu')
    small = np.rint(blob(H // 2, W // 2, 15.2, 8.7, 3.0) * 255).astype(np.uint8)
    image = np.kron(small, np.ones((2, 2), np.uint8))
    result = CentroidPredictor(engine).predict(image, 'mono8')
    ax, ay = analytic_centroid(image)
    assert abs(result.x - ax) < 0.05 and abs(result.y - ay) < 0.05


def test_centroid_out_of_view_on_black_frame(centroid_engine):
    result = CentroidPredictor(centroid_engine, min_confidence=0.5).predict(
        np.zeros((H, W), np.uint8))
    assert not result.in_view and result.confidence < 0.5


def test_xy_input_px_uses_thesis_scaling(model_dir):
    engine = InferenceEngine(export_reference_model('centroid_px', model_dir, H // 2, W // 2),
                             device='cpu')
    small = np.rint(blob(H // 2, W // 2, 12.4, 6.1, 3.0) * 255).astype(np.uint8)
    image = np.kron(small, np.ones((2, 2), np.uint8))
    result = CentroidPredictor(engine).predict(image, 'mono8')
    x_in, y_in = analytic_centroid(small)
    assert result.x == pytest.approx(x_in * 2, abs=1e-3)      # x = x_in * W / in_w
    assert result.y == pytest.approx(y_in * 2, abs=1e-3)
    assert result.confidence == 1.0 and result.in_view


def test_predictor_rejects_wrong_task(centroid_engine):
    with pytest.raises(ValueError, match='not a segmentation model'):
        SegmentationPredictor(centroid_engine)


@pytest.fixture(scope='module')
def seg_engine(model_dir):
    return InferenceEngine(export_reference_model('segmentation', model_dir, H // 2, W // 2),
                           device='cpu')


def block_colours():
    """(H/2, W/2, 3) uint8 of distinct channel values (no ties), with a ground region."""
    levels = np.array([0, 30, 90, 160, 230], np.uint8)
    small = levels[RNG.integers(0, 5, (H // 2, W // 2, 3))]
    small[:, :, 1] = np.where(small[:, :, 1] == small[:, :, 0], small[:, :, 1] // 2 + 1,
                              small[:, :, 1])
    small[:8, :10] = 0       # a ground patch so there is a safe site
    return small


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8'])
def test_segmentation_matches_thresholds(seg_engine, encoding):
    small = block_colours()
    rgb = np.kron(small, np.ones((2, 2, 1), np.uint8))
    image = {'rgb8': rgb, 'bgr8': rgb[..., ::-1].copy(),
             'rgba8': np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 9, np.uint8)], 2)
             }[encoding]
    # random blocks, raw argmax (speck removal has its own tests), 'nearest' upsampling (the
    # default 'bilinear' is tested below)
    nearest = dict(min_hazard_region_px=0, upsampling='nearest', flip_average=False)
    result = SegmentationPredictor(seg_engine, hazard_classes=(1, 2),
                                   **nearest).predict(image, encoding)
    expected = np.kron(expected_classes(small / 255.0), np.ones((2, 2), np.uint8))
    assert result.classes.dtype == np.uint8 and result.classes.shape == (H, W)
    np.testing.assert_array_equal(result.classes, expected)
    np.testing.assert_array_equal(result.hazard, np.where(np.isin(expected, (1, 2)), 255, 0))
    # The safe site is found on the model-resolution class map and scaled to input pixels
    # (s = 2): hazard-free at full resolution and near the full-resolution optimum.
    small_site = largest_safe_disc(expected_classes(small / 255.0), (1, 2))
    assert result.safe_site == scale_site(small_site, 2.0, 2.0)
    assert result.safe_site is not None
    x, y, r = result.safe_site
    assert clearance(expected, x, y) >= r - 2 / np.sqrt(2) - 1e-9
    assert abs(r - brute_force_disc(expected, (1, 2))) <= 2 * np.sqrt(2) + 1e-9
    no_classes = SegmentationPredictor(seg_engine, **nearest).predict(
        image, encoding, classes=False)
    assert no_classes.classes is None
    np.testing.assert_array_equal(no_classes.hazard, result.hazard)
    off = SegmentationPredictor(seg_engine, compute_safe_site=False,
                                **nearest).predict(image, encoding)
    assert off.safe_site is None


def smooth_scene(h, w, seed):
    """(h, w, 3) uint8 with smooth colour fields, so bilinear and nearest upsampling differ
    along many class boundaries."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 5, 3)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(
        np.uint8)


def bilinear_reference(small_rgb, width, height):
    logits = reference_logits(small_rgb / 255.0)
    up = np.stack([cv2.resize(p, (width, height), interpolation=cv2.INTER_LINEAR)
                   for p in logits])
    return np.argmax(up, axis=0).astype(np.uint8)


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8'])
def test_segmentation_bilinear_is_the_argmax_of_upsampled_logits(seg_engine, encoding):
    """Default upsampling: the class map is the argmax of the logits bilinearly upsampled to
    the input (pixel centres aligned); hazard and safe site are derived from that map at the
    input resolution (the safe site exactly, no scaling)."""
    small = smooth_scene(H // 2, W // 2, 5)
    rgb = np.kron(small, np.ones((2, 2, 1), np.uint8))      # area-resizes back to `small`
    image = rgb if encoding == 'rgb8' else rgb[..., ::-1].copy()
    predictor = SegmentationPredictor(seg_engine, min_hazard_region_px=0)
    assert predictor.upsampling == 'bilinear'
    result = predictor.predict(image, encoding)
    expected = bilinear_reference(small, W, H)
    nearest = np.kron(expected_classes(small / 255.0), np.ones((2, 2), np.uint8))
    assert (expected != nearest).sum() > 20          # the two modes differ on this scene
    assert len(np.unique(expected)) >= 3
    np.testing.assert_array_equal(result.classes, expected)
    np.testing.assert_array_equal(result.hazard, np.where(np.isin(expected, (1, 2)), 255, 0))
    assert result.safe_site == largest_safe_disc(expected, (1, 2))
    # the torch path (what runs on CUDA) gives the same map from the same logits
    logits = torch.from_numpy(reference_logits(small / 255.0))
    np.testing.assert_array_equal(torch_class_map(logits, W, H), expected)
    np.testing.assert_array_equal(torch_class_map(logits, W // 2, H // 2),
                                  expected_classes(small / 255.0))


@pytest.mark.parametrize('upsampling', ['bilinear', 'nearest'])
def test_flip_average_mirrors_the_second_answer_back(model_dir, upsampling):
    """A model that is not mirror-symmetric (each pixel gets the logits of its left
    neighbour): with flip averaging, pixel x gets the sum of the logits of x - 1 (the frame)
    and x + 1 (the mirrored frame, mirrored back); without, those of x - 1."""
    engine = InferenceEngine(export_reference_model('segmentation_shifted', model_dir, H, W),
                             device='cpu')
    rgb = smooth_scene(H, W, 9)
    logits = reference_logits(rgb / 255.0)
    left = np.concatenate([logits[..., :1], logits[..., :-1]], axis=2)
    right = np.concatenate([logits[..., 1:], logits[..., -1:]], axis=2)
    plain = SegmentationPredictor(engine, min_hazard_region_px=0, upsampling=upsampling,
                                  flip_average=False).predict(rgb, 'rgb8')
    both = SegmentationPredictor(engine, min_hazard_region_px=0, upsampling=upsampling,
                                 flip_average=True).predict(rgb, 'rgb8')
    np.testing.assert_array_equal(plain.classes, np.argmax(left, axis=0))
    summed = np.sort(left + right, axis=0)
    clear = summed[-1] - summed[-2] > 1e-5         # float32 sums of equal values may tie
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(both.classes[clear], np.argmax(left + right, axis=0)[clear])
    assert (plain.classes != both.classes).sum() > 10


def test_bad_upsampling_is_refused(seg_engine):
    with pytest.raises(ValueError, match='upsampling must be one of bilinear, nearest'):
        SegmentationPredictor(seg_engine, upsampling='cubic')


def test_preprocess_normalises_and_orders_channels():
    manifest = ModelManifest(name='t', task='segmentation', arch='t', output='logits_nchw',
                             input=InputSpec(height=2, width=3, channels=3, resize='area',
                                             mean=[0.1, 0.2, 0.3], std=[0.5, 0.25, 2.0]))
    pre = Preprocessor(manifest, 'cpu')
    rgb = RNG.integers(0, 256, (2, 3, 3), dtype=np.uint8)
    expected = (rgb / 255.0 - [0.1, 0.2, 0.3]) / [0.5, 0.25, 2.0]
    expected = torch.from_numpy(expected.transpose(2, 0, 1)[None]).float()
    torch.testing.assert_close(pre(rgb, 'rgb8'), expected)
    torch.testing.assert_close(pre(rgb[..., ::-1].copy(), 'bgr8'), expected)
    mono = RNG.integers(0, 256, (2, 3), dtype=np.uint8)
    rep = (np.repeat(mono[:, :, None], 3, 2) / 255.0 - [0.1, 0.2, 0.3]) / [0.5, 0.25, 2.0]
    torch.testing.assert_close(pre(mono, 'mono8'),
                               torch.from_numpy(rep.transpose(2, 0, 1)[None]).float())


def test_preprocess_luma_mode_feeds_bt601_luma_to_every_channel():
    manifest = ModelManifest(name='t', task='segmentation', arch='t', output='logits_nchw',
                             input=InputSpec(height=2, width=3, channels=3, color='luma',
                                             mean=[0.5], std=[0.25]))
    pre = Preprocessor(manifest, 'cpu')
    rgb = RNG.integers(0, 256, (2, 3, 3), dtype=np.uint8)
    luma = np.rint(rgb @ np.array([0.299, 0.587, 0.114]))      # cv2 rounds to uint8
    expected = torch.from_numpy(np.repeat(((luma / 255.0 - 0.5) / 0.25)[None, None], 3, 1))
    torch.testing.assert_close(pre(rgb, 'rgb8'), expected.float(), atol=1 / 255 / 0.25, rtol=0)
    torch.testing.assert_close(pre(rgb[..., ::-1].copy(), 'bgr8'), pre(rgb, 'rgb8').clone())
    # exactly what a mono8 frame of that luma gives (the colours themselves are not seen)
    mono = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    torch.testing.assert_close(pre(rgb, 'rgb8').clone(), pre(mono, 'mono8').clone())
    rgb_model = Preprocessor(ModelManifest(name='t', task='segmentation', arch='t',
                                           output='logits_nchw',
                                           input=InputSpec(height=2, width=3, channels=3)), 'cpu')
    assert not torch.equal(rgb_model(rgb, 'rgb8').clone(), rgb_model(mono, 'mono8').clone())


def test_manifest_color_mode_round_trips_and_unknown_modes_are_refused(tmp_path):
    from spacenav_perception.core.manifest import _servable_problem
    m = ModelManifest(name='t', task='segmentation', arch='t', output='logits_nchw',
                      input=InputSpec(height=2, width=3, channels=3, color='luma'))
    again = ModelManifest.from_dict(m.to_dict())
    assert again.input.color == 'luma' and _servable_problem(again) is None
    old = m.to_dict()
    del old['input']['color']                   # manifests written before the field: colours
    assert ModelManifest.from_dict(old).input.color == 'rgb'
    m.input.color = 'hsv'
    assert 'color' in _servable_problem(m)


def test_preprocess_resizes_with_area():
    manifest = ModelManifest(name='t', task='centroid', arch='t', output='xy_norm_logit',
                             input=InputSpec(height=4, width=4, channels=1))
    image = RNG.integers(0, 65536, (16, 16), dtype=np.uint16)
    out = Preprocessor(manifest, 'cpu')(image, 'mono16')
    expected = cv2.resize(image, (4, 4), interpolation=cv2.INTER_AREA) / 65535.0
    torch.testing.assert_close(out[0, 0], torch.from_numpy(expected).float())


@pytest.mark.parametrize('color', ['rgb', 'luma'])
def test_preprocess_demosaics_bayer_frames(color):
    """A raw Bayer frame reaches an RGB (or luma) model as its demosaiced colour frame would."""
    from spacenav_perception.core.image_codec import to_rgb_u8
    manifest = ModelManifest(name='t', task='segmentation', arch='t', output='logits_nchw',
                             class_names=['a', 'b'],
                             input=InputSpec(height=6, width=8, channels=3, color=color))
    raw = RNG.integers(0, 256, (12, 16), dtype=np.uint8)
    for encoding in ('bayer_rggb8', 'bayer_gbrg8'):
        got = Preprocessor(manifest, 'cpu')(raw, encoding).clone()
        want = Preprocessor(manifest, 'cpu')(to_rgb_u8(raw, encoding), 'rgb8')
        torch.testing.assert_close(got, want, atol=1.5 / 255, rtol=0)   # cv2's own Bayer->gray
        if color == 'rgb':
            torch.testing.assert_close(got, want, atol=0, rtol=0)


@pytest.mark.parametrize('channels', [1, 3])
def test_preprocess_converts_yuv422_frames(channels):
    """A packed YUV 4:2:2 frame reaches a mono or RGB model exactly as its RGB frame would."""
    from spacenav_perception.core.image_codec import to_rgb_u8
    manifest = ModelManifest(name='t', task='segmentation', arch='t', output='logits_nchw',
                             class_names=['a', 'b'],
                             input=InputSpec(height=6, width=8, channels=channels))
    raw = RNG.integers(0, 256, (12, 16, 2), dtype=np.uint8)
    for encoding in ('uyvy', 'yuyv', 'yuv422', 'yuv422_yuy2'):
        got = Preprocessor(manifest, 'cpu')(raw, encoding).clone()
        want = Preprocessor(manifest, 'cpu')(to_rgb_u8(raw, encoding), 'rgb8')
        torch.testing.assert_close(got, want, atol=0, rtol=0)
    assert not torch.equal(Preprocessor(manifest, 'cpu')(raw, 'uyvy').clone(),
                           Preprocessor(manifest, 'cpu')(raw, 'yuyv'))   # byte order matters


@pytest.mark.parametrize('channels', [1, 3])
def test_preprocess_keeps_sixteen_bit_colour_precision(channels):
    """16-bit colour and Bayer frames reach the model from their 16-bit samples (scaled by
    1 / 65535), not from their top byte: a dim frame whose samples are all under 256 still
    reaches the model as a picture."""
    from spacenav_perception.core.image_codec import to_mono_float, to_rgb_float, to_rgb_u8
    manifest = ModelManifest(name='t', task='segmentation', arch='t', output='logits_nchw',
                             class_names=['a', 'b'],
                             input=InputSpec(height=12, width=16, channels=channels))
    dim = RNG.integers(0, 256, (12, 16, 3), dtype=np.uint16)
    raw = RNG.integers(0, 256, (12, 16), dtype=np.uint16)
    for frame, encoding in ((dim, 'rgb16'), (dim[..., ::-1].copy(), 'bgr16'),
                            (raw, 'bayer_gbrg16')):
        got = Preprocessor(manifest, 'cpu')(frame, encoding).clone()
        if channels == 1:
            want = torch.from_numpy(to_mono_float(frame, encoding))[None]
        else:
            want = torch.from_numpy(to_rgb_float(frame, encoding)).permute(2, 0, 1)
        torch.testing.assert_close(got[0], want, atol=1.5 / 65535, rtol=0)
        assert float(got.max()) > 0 and not to_rgb_u8(frame, encoding).any()


def test_preprocess_mono16_bits_scales_and_clips():
    """mono16_bits=12: samples above 4095 clipped, area-resized, / 4095."""
    manifest = ModelManifest(name='t', task='centroid', arch='t', output='xy_norm_logit',
                             input=InputSpec(height=4, width=4, channels=1))
    image = RNG.integers(0, 4096 + 300, (16, 16), dtype=np.uint16)
    out = Preprocessor(manifest, 'cpu', mono16_bits=12)(image, 'mono16').clone()
    expected = cv2.resize(np.minimum(image, 4095), (4, 4), interpolation=cv2.INTER_AREA) / 4095
    torch.testing.assert_close(out[0, 0], torch.from_numpy(expected).float())
    unclipped = Preprocessor(manifest, 'cpu')(image, 'mono16')          # 16 bits: / 65535
    assert float(unclipped.max()) < 0.07
    with pytest.raises(ValueError, match='significant bits'):
        Preprocessor(manifest, 'cpu', mono16_bits=20)


# ---------------------------------------------------------------- safe site
def brute_force_disc(classes, hazard_classes, ground=0):
    safe = (classes == ground) & ~np.isin(classes, hazard_classes)
    h, w = classes.shape
    padded = np.zeros((h + 2, w + 2), bool)
    padded[1:-1, 1:-1] = safe
    unsafe = np.argwhere(~padded).astype(float)
    best = None
    for y, x in np.argwhere(safe):
        r = np.sqrt(((unsafe - (y + 1, x + 1)) ** 2).sum(1)).min()
        if best is None or r > best:
            best = r
    return best


def clearance(classes, x, y):
    """Distance from the point (x, y) to the nearest unsafe pixel centre or outside pixel."""
    h, w = classes.shape
    unsafe = np.ones((h + 2, w + 2), bool)
    unsafe[1:-1, 1:-1] = classes != 0
    rows, cols = np.nonzero(unsafe)
    return float(np.sqrt((cols - 1 - x) ** 2 + (rows - 1 - y) ** 2).min())


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10 ** 6), h=st.integers(2, 10), w=st.integers(2, 10),
       s=st.sampled_from([1.0, 2.0, 3.0, 1.5]))
def test_scaled_safe_site_is_safe_at_full_resolution(seed, h, w, s):
    small = np.random.default_rng(seed).choice([0, 0, 0, 0, 1, 2], (h, w)).astype(np.uint8)
    big_h, big_w = int(round(h * s)), int(round(w * s))
    full = cv2.resize(small, (big_w, big_h), interpolation=cv2.INTER_NEAREST_EXACT)
    site = scale_site(largest_safe_disc(small), big_w / w, big_h / h)
    best = brute_force_disc(full, (1, 2))
    if best is None:
        assert site is None
        return
    x, y, r = site
    assert clearance(full, x, y) >= r - s / np.sqrt(2) - 1e-9
    assert abs(r - best) <= np.sqrt(2) * s + 1e-9


def test_safe_site_finder_reuses_buffers_across_shapes():
    finder = SafeSiteFinder((1, 2))
    for seed, shape in [(1, (7, 9)), (2, (7, 9)), (3, (4, 11)), (4, (7, 9))]:
        classes = np.random.default_rng(seed).choice([0, 0, 1, 3], shape).astype(np.uint8)
        assert finder(classes) == largest_safe_disc(classes, (1, 2))


def test_safe_site_constructed_masks():
    assert largest_safe_disc(np.zeros((9, 9), np.uint8)) == (4.0, 4.0, 5.0)
    classes = np.zeros((9, 15), np.uint8)
    classes[:, :6] = 2              # large rocks on the left
    x, y, r = largest_safe_disc(classes)
    assert (x, y, r) == (10.0, 4.0, 5.0)
    assert largest_safe_disc(np.full((5, 5), 3, np.uint8)) is None      # all sky
    assert largest_safe_disc(np.ones((5, 5), np.uint8)) is None        # all rock


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10 ** 6), h=st.integers(1, 12), w=st.integers(1, 12))
def test_safe_site_is_the_farthest_safe_pixel(seed, h, w):
    classes = np.random.default_rng(seed).choice([0, 0, 0, 1, 2, 3], (h, w)).astype(np.uint8)
    site = largest_safe_disc(classes, (1, 2))
    best = brute_force_disc(classes, (1, 2))
    if best is None:
        assert site is None
        return
    x, y, r = site
    assert classes[int(y), int(x)] == 0
    assert r == pytest.approx(best, abs=1e-3)


# ---------------------------------------------------------------- bearing
K = np.array([[500.0, 0.0, 320.0], [0.0, 480.0, 240.0], [0.0, 0.0, 1.0]])


def test_bearing_pinhole_by_hand():
    v = bearing_from_pixel(820.0, 240.0, K.ravel().tolist())
    np.testing.assert_allclose(v, np.array([1.0, 0.0, 1.0]) / np.sqrt(2), atol=1e-12)
    v = bearing_from_pixel(320.0, 240.0, K, D=[0, 0, 0, 0, 0])
    np.testing.assert_allclose(v, [0, 0, 1])
    v = bearing_from_pixel(320.0, 0.0, K)        # top edge: y up = negative
    np.testing.assert_allclose(v, np.array([0.0, -0.5, 1.0]) / np.linalg.norm([0, 0.5, 1]))


@pytest.mark.parametrize('model,D', [
    ('plumb_bob', [-0.2, 0.05, 0.001, -0.002, 0.01]),
    ('rational_polynomial', [-0.2, 0.05, 0.001, -0.002, 0.01, 0.01, 0.002, 0.001]),
    ('equidistant', [0.1, -0.02, 0.003, 0.0]),
])
def test_bearing_undistorts_projected_points(model, D):
    D = np.array(D)
    for point in ([0.3, -0.2, 1.0], [-0.1, 0.25, 2.0], [0.0, 0.0, 1.0]):
        P = np.array([point])
        if model == 'equidistant':
            uv, _ = cv2.fisheye.projectPoints(P.reshape(1, 1, 3), np.zeros(3), np.zeros(3), K, D)
        else:
            uv, _ = cv2.projectPoints(P, np.zeros(3), np.zeros(3), K, D)
        v = bearing_from_pixel(*uv.ravel(), K, D, distortion_model=model)
        np.testing.assert_allclose(v, P[0] / np.linalg.norm(P[0]), atol=1e-7)


def test_bearing_rejects_bad_input():
    with pytest.raises(ValueError, match='zero focal length'):
        bearing_from_pixel(1, 1, [0, 0, 0, 0, 0, 0, 0, 0, 1])
    with pytest.raises(ValueError, match='unknown distortion model'):
        bearing_from_pixel(1, 1, K, D=[0.1, 0, 0, 0, 0], distortion_model='kannala')
    with pytest.raises(ValueError):
        bearing_from_pixel(1, 1, [1, 2, 3])


# ---------------------------------------------------------------- latency
def test_latency_window_percentiles_and_threads():
    window = LatencyWindow(maxlen=100)
    assert np.isnan(window.percentile(50)) and window.count == 0
    threads = [threading.Thread(target=lambda: [window.add(v) for v in range(1, 101)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert window.count == 100 and window.total == 400
    window.clear()
    for v in range(1, 101):
        window.add(v)
    assert window.percentile(50) == pytest.approx(50.5)
    assert window.percentile(100) == 100.0
