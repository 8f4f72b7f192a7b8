"""Speck removal (core/hazard_specks.py) by hand-made maps, and through SegmentationPredictor,
where the threshold is in input pixels and applied at the model's resolution."""
import numpy as np
import pytest

from spacenav_perception.core.engine import InferenceEngine
from spacenav_perception.core.hazard_specks import remove_specks
from spacenav_perception.core.segmentation_predictor import SegmentationPredictor
from spacenav_perception.nets.reference import export_reference_model

GROUND, SMALL, LARGE, SKY = 0, 1, 2, 3


def hazard_of(classes, hazard_classes=(SMALL, LARGE)):
    return np.where(np.isin(classes, hazard_classes), 255, 0).astype(np.uint8)


def test_regions_under_the_area_become_ground():
    classes = np.zeros((20, 30), np.uint8)
    classes[:4] = SKY                          # a large non-hazard region: untouched
    classes[1, 1] = SKY                        # (already sky)
    classes[6, 2] = SMALL                      # 1 px
    classes[8, 8], classes[9, 9] = SMALL, LARGE  # 2 px, diagonal neighbours: one region
    classes[12:15, 2:7] = LARGE                # 15 px: kept at min_area 15
    classes[12:14, 12:19] = SMALL              # 14 px ...
    classes[14, 12] = SKY                      # ... next to sky: still 14 hazard px, removed
    classes[16:19, 20:25] = SMALL              # 15 px of two classes: one region, kept
    classes[16:19, 25] = LARGE
    classes[5, 29] = LARGE                     # 1 px at the frame edge
    hazard = hazard_of(classes)
    expected = classes.copy()
    for (r, c) in [(6, 2), (8, 8), (9, 9), (5, 29)]:
        expected[r, c] = GROUND
    expected[12:14, 12:19] = GROUND
    removed = remove_specks(classes, hazard, 15, GROUND)
    assert removed == 4
    np.testing.assert_array_equal(classes, expected)
    np.testing.assert_array_equal(hazard, hazard_of(expected))
    # 0 (or less) keeps every pixel
    again = expected.copy()
    again[0, 29] = SMALL
    assert remove_specks(again, hazard_of(again), 0, GROUND) == 0 and again[0, 29] == SMALL


def test_ground_that_is_a_hazard_stays_hazard():
    classes = np.zeros((6, 6), np.uint8)
    classes[2, 2] = SMALL
    hazard = hazard_of(classes, (GROUND, SMALL))
    assert remove_specks(classes, hazard, 30, GROUND, ground_is_hazard=True) == 0  # 36 px
    classes[:] = SKY
    classes[2, 2] = SMALL
    hazard = hazard_of(classes, (GROUND, SMALL))
    assert remove_specks(classes, hazard, 2, GROUND, ground_is_hazard=True) == 1
    assert classes[2, 2] == GROUND and hazard[2, 2] == 255


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match='differ'):
        remove_specks(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8), 3, GROUND)


@pytest.mark.parametrize('upsampling', ['nearest', 'bilinear'])
def test_predictor_threshold_is_in_input_pixels(tmp_path, upsampling):
    """Model at half the frame size. 'nearest': a rock of 2x2 model pixels covers 16 input
    pixels and the threshold is scaled to the model's pixels; 'bilinear': the regions of the
    full-resolution map are measured directly."""
    engine = InferenceEngine(export_reference_model('segmentation', tmp_path, 16, 24),
                             device='cpu')
    small = np.zeros((16, 24, 3), np.uint8)
    small[4:6, 4:6] = (20, 200, 30)            # small rock, 4 model px
    small[10:13, 14:20] = (20, 40, 220)        # large rock, 18 model px
    frame = np.kron(small, np.ones((2, 2, 1), np.uint8))      # 32 x 48
    def classes(px):
        return SegmentationPredictor(engine, min_hazard_region_px=px,
                                     upsampling=upsampling).predict(frame, 'rgb8')
    raw = classes(0).classes
    n_small, n_large = (raw == SMALL).sum(), (raw == LARGE).sum()
    if upsampling == 'nearest':
        assert (n_small, n_large) == (16, 72)
    assert 4 < n_small < n_large
    kept = classes(n_small)
    assert (kept.classes == SMALL).sum() == n_small and (kept.classes == LARGE).sum() == n_large
    gone = classes(n_small + 1)
    assert (gone.classes == SMALL).sum() == 0 and (gone.classes == LARGE).sum() == n_large
    np.testing.assert_array_equal(gone.hazard, hazard_of(gone.classes))
    assert classes(n_large + 1).hazard.max() == 0
    with pytest.raises(ValueError, match='min_hazard_region_px'):
        SegmentationPredictor(engine, min_hazard_region_px=-1)
