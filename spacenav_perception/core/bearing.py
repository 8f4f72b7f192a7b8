"""Unit line-of-sight vector from a pixel and the camera intrinsics. ROS-free.

Camera optical frame (ROS REP 103 / OpenCV): z forward along the optical axis, x right, y down.
Pixel convention: (0, 0) is the centre of the top-left pixel, as in sensor_msgs/CameraInfo.
"""
from __future__ import annotations

import cv2
import numpy as np

DISTORTION_MODELS = ('plumb_bob', 'rational_polynomial', 'equidistant')
_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)


def camera_matrix(K) -> np.ndarray:
    """3x3 float64 camera matrix from a 3x3 array or a 9-element row-major list (CameraInfo.k)."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape == (9,):
        K = K.reshape(3, 3)
    if K.shape != (3, 3):
        raise ValueError(f'camera matrix must be 3x3 or 9 values, got shape {K.shape}')
    if not np.all(np.isfinite(K)):
        raise ValueError('camera matrix has non-finite values')
    if K[0, 0] == 0 or K[1, 1] == 0:
        raise ValueError(f'camera matrix has zero focal length (fx={K[0, 0]}, fy={K[1, 1]}); '
                         'is the CameraInfo filled in?')
    return K


def bearing_from_pixel(x: float, y: float, K, D=None, distortion_model: str = 'plumb_bob'
                       ) -> np.ndarray:
    """Unit (3,) vector in the camera optical frame towards pixel (x, y).

    With a non-zero D the pixel is undistorted first: plumb_bob / rational_polynomial with
    cv2.undistortPoints (iterated to 1e-12), equidistant with cv2.fisheye.undistortPoints.
    """
    K = camera_matrix(K)
    D = np.zeros(0) if D is None else np.asarray(D, dtype=np.float64).ravel()
    if D.size and np.any(D != 0):
        point = np.array([[[float(x), float(y)]]], dtype=np.float64)
        if distortion_model == 'equidistant':
            if D.size < 4:
                raise ValueError(f'equidistant distortion needs 4 coefficients, got {D.size}')
            normalised = cv2.fisheye.undistortPoints(point, K, D[:4].reshape(4, 1),
                                                     criteria=_CRITERIA)
        elif distortion_model in ('plumb_bob', 'rational_polynomial'):
            normalised = cv2.undistortPoints(point, K, D, R=None, P=None, criteria=_CRITERIA)
        else:
            raise ValueError(f'unknown distortion model {distortion_model!r}; use one of '
                             f'{", ".join(DISTORTION_MODELS)}')
        xn, yn = (float(v) for v in normalised.reshape(2))
    else:
        yn = (float(y) - K[1, 2]) / K[1, 1]
        xn = (float(x) - K[0, 2] - K[0, 1] * yn) / K[0, 0]
    v = np.array([xn, yn, 1.0])
    return v / np.linalg.norm(v)
