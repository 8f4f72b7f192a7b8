"""Rock-level scores (evaluation/rock_detection.py) on hand-made masks whose answer is known."""
import json

import numpy as np
import pytest

from spacenav_perception.evaluation.rock_detection import RockDetectionCounter, format_rocks

GROUND, SMALL, LARGE, SKY = 0, 1, 2, 3


def frame(scale: int = 1):
    """A 480x720 frame (or 1/scale of it): a found small rock, a large rock predicted as small
    rock (found, wrong class), a missed small rock, and one false alarm.  Areas at 720x480:
    small 6x6 = 36 px, large 20x20 = 400 px, missed 12x12 = 144 px, false alarm 12x12 = 144 px."""
    h, w = 480 // scale, 720 // scale
    truth = np.zeros((h, w), np.uint8)
    pred = np.zeros((h, w), np.uint8)
    truth[:40 // scale] = pred[:40 // scale] = SKY
    s = lambda a: slice(a[0] // scale, a[1] // scale)
    truth[s((100, 106)), s((100, 106))] = SMALL
    pred[s((100, 106)), s((100, 106))] = SMALL                 # found, right class
    truth[s((200, 220)), s((200, 220))] = LARGE
    pred[s((200, 214)), s((200, 220))] = SMALL                 # 70 % predicted rock, as small
    truth[s((300, 312)), s((400, 412))] = SMALL                # missed
    pred[s((300, 304)), s((400, 412))] = LARGE                 # only a third predicted rock
    pred[s((400, 412)), s((600, 612))] = LARGE                 # false alarm: no truth rock
    return truth, pred


def _bin(rocks, cls, lo):
    return next(b for b in rocks['bins'] if b['class'] == cls and b['area_px'][0] == lo)


@pytest.mark.parametrize('scale', [1, 2])
def test_found_right_class_missed_and_false_alarms(scale):
    counter = RockDetectionCounter()
    truth, pred = frame(scale)
    counter.add(truth, pred)
    counter.add(truth, pred)
    rocks = json.loads(json.dumps(counter.result()))          # strict JSON, no Infinity
    assert rocks['frames'] == 2
    assert _bin(rocks, 'small_rock', 30) == {'class': 'small_rock', 'area_px': [30, 100], 'n': 2,
                                             'found': 2, 'recall': 1.0, 'right_class': 1.0}
    missed = _bin(rocks, 'small_rock', 100)
    assert (missed['n'], missed['found'], missed['recall']) == (2, 0, 0.0)
    large = _bin(rocks, 'large_rock', 300)
    assert (large['n'], large['found'], large['right_class']) == (2, 2, 0.0)
    assert rocks['totals']['small_rock'] == {'n': 4, 'found': 2, 'recall': 0.5, 'right_class': 0.5}
    # the partial prediction on the missed rock touches it, so it is not a false alarm
    assert rocks['false_alarms']['n'] == 2 and rocks['false_alarms']['per_frame'] == 1.0
    assert [b['n'] for b in rocks['false_alarms']['by_area'] if b['area_px'][0] == 100] == [2]
    assert rocks['bins'][-1]['area_px'][1] is None
    text = '\n'.join(format_rocks(rocks))
    assert 'small_rock' in text and 'false alarms' in text and '1.00 per frame' in text


def test_no_rocks_and_shape_mismatch():
    counter = RockDetectionCounter()
    counter.add(np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8))
    rocks = counter.result()
    assert rocks['totals']['small_rock']['recall'] is None and rocks['false_alarms']['n'] == 0
    with pytest.raises(ValueError, match='differ in shape'):
        counter.add(np.zeros((10, 10), np.uint8), np.zeros((10, 12), np.uint8))
