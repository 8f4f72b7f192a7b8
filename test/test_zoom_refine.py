"""The centroid predictor's second pass on a crop around its first answer (core/zoom_refine.py):
the crop maps back exactly, stays inside the frame and on even pixels, and is skipped where it
must be; the manifest, predictor and node refuse values that would cut the body."""
import json

import numpy as np
import pytest

from spacenav_perception.core import zoom_refine as zoom
from spacenav_perception.core.centroid_predictor import CentroidPredictor
from spacenav_perception.core.engine import InferenceEngine
from spacenav_perception.core.manifest import ModelIntegrityError, load_manifest, \
    zoom_refine_problem
from spacenav_perception.nets.reference import export_reference_model

SIZE = 192            # frame
MODEL = 32            # reference model input: a 6x smaller view of the frame


def disc(cx, cy, r, size=SIZE):
    yy, xx = np.mgrid[0:size, 0:size]
    return np.clip(r + 0.5 - np.hypot(xx - cx, yy - cy), 0, 1)


def weighted_centre(f):
    f = f.astype(np.float64)
    yy, xx = np.mgrid[0:f.shape[0], 0:f.shape[1]]
    return (f * xx).sum() / f.sum(), (f * yy).sum() / f.sum()


class CountingEngine:
    """The engine, recording the model inputs it was given."""

    def __init__(self, engine):
        self._engine, self.inputs = engine, []

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def __call__(self, x):
        self.inputs.append(x.detach().clone())
        return self._engine(x)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    return export_reference_model('centroid', tmp_path_factory.mktemp('zoom'), MODEL, MODEL)


def predictor(reference, factor):
    engine = CountingEngine(InferenceEngine(reference, device='cpu'))
    return CentroidPredictor(engine, zoom_refine=factor), engine


@pytest.mark.parametrize('cx, cy', [(70.3, 101.6), (24.6, 166.2)])   # mid-frame, near a corner
def test_second_pass_maps_back_to_the_frame(reference, cx, cy):
    f = disc(cx, cy, 9.0)
    image = np.rint(f * 255).astype(np.uint8)
    p, engine = predictor(reference, 2.25)
    r = p.predict(image, 'mono8')
    assert r.refined and len(engine.inputs) == 2
    ax, ay = weighted_centre(image)
    assert abs(r.x - ax) < 0.1 and abs(r.y - ay) < 0.1
    # the second input shows the body larger: more of its pixels are lit
    lit = [int((x[0, 0] > 0.1).sum()) for x in engine.inputs]
    assert lit[1] > 2.5 * lit[0]
    one, _ = predictor(reference, 0.0)
    r1 = one.predict(image, 'mono8')
    assert not r1.refined and (r1.confidence, r1.in_view) == (r.confidence, r.in_view)


def test_second_pass_is_skipped_for_cut_bodies_dark_frames_and_big_crops(reference):
    p, engine = predictor(reference, 2.25)
    cut = np.rint(disc(4.0, 90.0, 12.0) * 255).astype(np.uint8)       # cut by the left edge
    assert not p.predict(cut).refined and len(engine.inputs) == 1
    assert not p.predict(np.zeros((SIZE, SIZE), np.uint8)).refined     # not in view
    big = np.rint(disc(96.0, 96.0, 50.0) * 255).astype(np.uint8)      # 2.25 x 101 px > frame
    assert not p.predict(big).refined
    assert len(engine.inputs) == 3


def test_bayer_crops_keep_the_mosaic_phase(reference):
    """A disc red on its left half and blue on its right: luma weighs the halves differently,
    so a crop that shifted the Bayer pattern by one pixel would move the answer."""
    f = disc(81.4, 77.8, 10.0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    red = np.where(xx < 81.4, f, 0.0)
    blue = f - red
    mosaic = np.zeros((SIZE, SIZE), np.float64)
    mosaic[0::2, 0::2] = red[0::2, 0::2]           # RGGB: R at even row, even column
    mosaic[1::2, 1::2] = blue[1::2, 1::2]
    image = np.rint(mosaic * 255).astype(np.uint8)
    once, _ = predictor(reference, 0.0)
    twice, engine = predictor(reference, 2.25)
    for x0 in (79, 80):                            # first answers on odd and even columns
        shifted = np.roll(image, x0 - 80, axis=1)
        a, b = once.predict(shifted, 'bayer_rggb8'), twice.predict(shifted, 'bayer_rggb8')
        assert b.refined
        assert abs(a.x - b.x) < 0.3 and abs(a.y - b.y) < 0.3


def test_crop_window_is_even_inside_and_centred():
    x0, y0, side = zoom.crop_window(100.2, 50.7, 20.0, 2.25, 300, 200)
    assert side in (44, 46) and x0 % 2 == 0 and y0 % 2 == 0
    assert abs(x0 + side / 2 - 100.2) <= 1.5 and abs(y0 + side / 2 - 50.7) <= 1.5
    x0, y0, side = zoom.crop_window(3.0, 197.0, 20.0, 2.25, 300, 200)
    assert x0 == 0 and y0 + side <= 200 and y0 % 2 == 0
    assert zoom.crop_window(100, 100, 150.0, 2.25, 300, 200) is None
    assert zoom.crop_window(100, 100, 1.0, 2.25, 300, 200)[2] == zoom.MIN_SIDE


def test_lit_extent_finds_the_body_not_the_stars():
    f = disc(60.0, 70.0, 15.0) * 0.8
    f[10, 150] = f[180, 20] = 1.0                  # two bright stars
    w, h, touches = zoom.lit_extent(f)
    assert 30 <= w <= 34 and 30 <= h <= 34 and not touches
    assert zoom.lit_extent(disc(2.0, 70.0, 15.0))[2]
    assert zoom.lit_extent(np.zeros((50, 50))) is None


def test_frame_extent_is_in_frame_pixels_and_none_without_a_second_pass():
    f = disc(60.0, 70.0, 15.0) * 0.8               # the model input of a 4x larger frame
    w, h, _ = zoom.lit_extent(f)
    assert zoom.frame_extent(f, f.shape[1] * 4, f.shape[0] * 4) == 4 * max(w, h)
    assert zoom.frame_extent(f, f.shape[1] * 4, f.shape[0] * 2) == max(4 * w, 2 * h)
    assert zoom.frame_extent(disc(2.0, 70.0, 15.0), 800, 800) is None   # cut by the edge
    assert zoom.frame_extent(np.zeros((50, 50)), 200, 200) is None


def test_bad_factors_are_refused_everywhere(reference, tmp_path):
    assert zoom_refine_problem(0.0) is None and zoom_refine_problem(2.25) is None
    for bad in (0.5, 100.0, float('nan'), 'wide', True):
        assert zoom_refine_problem(bad)
    assert 'centroid models' in zoom_refine_problem(2.0, 'segmentation')
    engine = InferenceEngine(reference, device='cpu')
    with pytest.raises(ValueError, match='zoom_refine'):
        CentroidPredictor(engine, zoom_refine=0.5)
    manifest_path = reference.with_suffix('.json')
    data = json.loads(manifest_path.read_text())
    for value, ok in ((2.0, True), (100.0, False)):
        data['zoom_refine'] = value
        manifest_path.write_text(json.dumps(data))
        if ok:
            m = load_manifest(reference, 'centroid')
            assert m.zoom_refine == 2.0 and m.to_dict()['zoom_refine'] == 2.0
            assert CentroidPredictor(InferenceEngine(reference, device='cpu')).zoom_refine == 2.0
        else:
            with pytest.raises(ModelIntegrityError, match='zoom_refine'):
                load_manifest(reference, 'centroid')
    del data['zoom_refine']
    manifest_path.write_text(json.dumps(data))
