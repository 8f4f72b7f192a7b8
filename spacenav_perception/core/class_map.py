"""Model-resolution class scores (C, h, w) -> uint8 class map at the input resolution, and the
defaults of how SegmentationPredictor gets there. ROS-free, torch-free (numpy + OpenCV; the
predictor does the same on CUDA with torch), so CLIs can show the defaults without torch.

Flip averaging (`DEFAULT_FLIP_AVERAGE`; `SegmentationPredictor(flip_average=...)`, hazard_node's
`flip_average` parameter): the model also sees the frame mirrored left-right and the two logit
maps are summed before the argmax (a mirrored lunar scene is as physical as the scene: the sun
is mirrored with it). Twice the model's time; with the shipped hazard model mIoU 0.8294 ->
0.8374 on lun_test (docs/RESULTS_MODELS.md, eleventh session).

Upsampling, two modes (`SegmentationPredictor(upsampling=...)`, hazard_node's `upsampling`
parameter):

- 'bilinear' (default): each class's logit plane is upsampled to the input resolution with
  cv2.INTER_LINEAR (pixel centres aligned, the project's convention: centre of the top-left
  pixel = (0, 0)) and the class map is the argmax there, so class boundaries fall between
  model pixels where the scores cross instead of on the model's pixel grid. Measured with the
  shipped hazard model (432x624 model input, 720x480 frames, speck removal on): mIoU 0.8239 ->
  0.8264 on lun_val_hr and 0.8270 -> 0.8294 on lun_test (docs/RESULTS_MODELS.md, eleventh
  session), for C float planes at the input resolution (bench/RESULTS.md).
- 'nearest': argmax at the model resolution, then the uint8 map is upsampled with
  cv2.INTER_NEAREST_EXACT; cheaper for inputs much larger than the model's.

When the model's output already has the input's size both modes are the same argmax.
"""
from __future__ import annotations

import cv2
import numpy as np

DEFAULT_FLIP_AVERAGE = True
UPSAMPLING_MODES = ('bilinear', 'nearest')
DEFAULT_UPSAMPLING = 'bilinear'


def check_upsampling(mode) -> str:
    if mode not in UPSAMPLING_MODES:
        raise ValueError(f'upsampling must be one of {", ".join(UPSAMPLING_MODES)}, not {mode!r}')
    return mode


class PlaneArgmax:
    """Callable: (C, h, w) array -> uint8 (h, w) index of the first maximum over C.

    A running compare over the C planes into buffers allocated once per shape (about 1 ms for 4
    x 256 x 384 on this project's CPU) instead of torch's argmax over the channel dimension of
    a channels-first tensor (tens of ms when the cores are shared). The returned array is one
    of these buffers: the next call overwrites it. Ties go to the lower class id, as in
    numpy/torch argmax."""

    def __init__(self):
        self._shape = None

    def __call__(self, planes: np.ndarray) -> np.ndarray:
        if planes.ndim != 3 or planes.shape[0] < 1:
            raise ValueError(f'expected (C, h, w) scores, got shape {planes.shape}')
        if planes.shape[0] > 256:
            raise ValueError(f'{planes.shape[0]} classes do not fit a uint8 class map')
        shape = planes.shape[1:]
        if shape != self._shape:
            self._best = np.empty(shape, np.float32)
            self._index = np.empty(shape, np.uint8)
            self._greater = np.empty(shape, np.bool_)
            self._shape = shape
        best, index, greater = self._best, self._index, self._greater
        np.copyto(best, planes[0])
        index.fill(0)
        for c in range(1, planes.shape[0]):
            np.greater(planes[c], best, out=greater)
            np.putmask(index, greater, c)
            np.maximum(best, planes[c], out=best)
        return index


class BilinearArgmax:
    """Callable: ((C, h, w) scores, width, height) -> uint8 (height, width) argmax of the
    bilinearly upsampled scores. The C upsampled planes and the result live in buffers
    allocated once per shape; the returned array is overwritten by the next call."""

    def __init__(self):
        self._argmax = PlaneArgmax()
        self._planes = None

    def __call__(self, planes: np.ndarray, width: int, height: int) -> np.ndarray:
        if planes.ndim != 3:
            raise ValueError(f'expected (C, h, w) scores, got shape {planes.shape}')
        shape = (planes.shape[0], int(height), int(width))
        if self._planes is None or self._planes.shape != shape:
            self._planes = np.empty(shape, np.float32)
        for src, dst in zip(planes, self._planes):
            cv2.resize(np.ascontiguousarray(src, dtype=np.float32), (shape[2], shape[1]),
                       dst=dst, interpolation=cv2.INTER_LINEAR)
        return self._argmax(self._planes)
