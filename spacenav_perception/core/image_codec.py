"""sensor_msgs/Image fields <-> numpy arrays, with validation. ROS-free (no rclpy import).

Decoding (`image_to_array`) checks every field before touching the data and raises
`ImageRejected` with a stable `.reason` code (a diagnostics key) and a message in plain words:

    unsupported_encoding  encoding is not one of SUPPORTED_ENCODINGS
    zero_size             width or height is 0 (or negative)
    too_large             height * width > max_pixels (default 8192 * 8192)
    step_too_small        step < width * bytes per pixel
    data_length           len(data) != step * height
    bad_data              data is not a byte buffer / sequence of ints in [0, 255]
    odd_width             a packed YUV 4:2:2 frame (one chroma pair per two pixels) of odd width
    non_finite            a 32FC1 frame holds NaN or Inf (rejected, never silently cleaned)

The returned array is a *view* on `data` whenever the buffer allows it (bytes, bytearray,
memoryview, array.array('B') as rclpy gives): row padding (`step`) becomes a row stride and
`is_bigendian` becomes the dtype byte order ('>u2' / '<u2', '>f4' / '<f4'), so no bytes are copied.
A plain list of ints is copied once. Views on immutable buffers (bytes) are read-only.

Encoding (`array_to_image_fields`) gives the fields for publishing with step = width * bpp,
is_bigendian = 0 and `data` a memoryview of a C-contiguous array (no copy when the array
already is). rclpy's Image.data setter is fastest with an array.array('B'): use
`byte_array(fields['data'])` (one copy) rather than assigning bytes/memoryview (checked per byte).

Conversions: `to_mono_float` / `to_rgb_float` give float32 in [0, 1] (mono16 / 65535, 32FC1
clipped, colour -> BT.601 luminance, alpha dropped, Bayer demosaiced, YUV 4:2:2 converted to
RGB first); `to_mono_u8` / `to_rgb_u8` are the cheap 8-bit paths (views or one cv2 call for
8-bit sources; two for YUV -> mono, whose luma is that of the converted RGB).
`to_mono_samples` / `to_rgb_samples` convert colour, Bayer and YUV frames keeping the sample
type (uint8 or uint16), for callers that scale by `FULL_SCALE` themselves.

16-bit colour (`rgb16`, `bgr16`, `rgba16`, `bgra16`) and 16-bit raw Bayer (`bayer_rggb16`, ...):
sensor_msgs defines them over the whole 0..65535 range, and so do these conversions (OpenCV
demosaics and converts 16-bit samples directly; the 8-bit paths keep the top byte).
`mono16_bits` applies to mono16 only.

Packed YUV 4:2:2 (`uyvy` and `yuyv`, and their deprecated ROS names `yuv422` and `yuv422_yuy2`,
as USB/V4L2 camera drivers publish them): two bytes per pixel, converted by OpenCV with the
BT.601 limited-range ("video range", Y 16..235) coefficients to full-range RGB, as cv_bridge
does. The mono path takes the luma of that RGB, not the raw Y byte, so a mono model sees the
same values from a YUV frame as from the RGB frame it stands for.

mono16 full scale: sensor_msgs defines mono16 over the whole 0..65535 range, but many drivers of
10-, 12- and 14-bit cameras publish the sensor's samples unshifted (0..4095 for 12 bits).
`mono16_bits` (default 16) names how many low bits carry the data: full scale 2**bits - 1
(`full_scale`); samples above it are clipped to it by the conversions (callers that must not
hide that check `over_range` first).
"""
from __future__ import annotations

import array as _array

import cv2
import numpy as np

SUPPORTED_ENCODINGS = ('mono8', 'mono16', 'rgb8', 'bgr8', 'rgba8', 'bgra8', '32FC1',
                       'rgb16', 'bgr16', 'rgba16', 'bgra16',
                       'bayer_rggb8', 'bayer_bggr8', 'bayer_gbrg8', 'bayer_grbg8',
                       'bayer_rggb16', 'bayer_bggr16', 'bayer_gbrg16', 'bayer_grbg16',
                       'uyvy', 'yuyv', 'yuv422', 'yuv422_yuy2')

# encoding -> (base dtype char, bytes per channel, channels)
_LAYOUT = {
    'mono8': ('u1', 1, 1),
    'mono16': ('u2', 2, 1),
    'rgb8': ('u1', 1, 3),
    'bgr8': ('u1', 1, 3),
    'rgba8': ('u1', 1, 4),
    'bgra8': ('u1', 1, 4),
    '32FC1': ('f4', 4, 1),
    'rgb16': ('u2', 2, 3),
    'bgr16': ('u2', 2, 3),
    'rgba16': ('u2', 2, 4),
    'bgra16': ('u2', 2, 4),
    'bayer_rggb8': ('u1', 1, 1),
    'bayer_bggr8': ('u1', 1, 1),
    'bayer_gbrg8': ('u1', 1, 1),
    'bayer_grbg8': ('u1', 1, 1),
    'bayer_rggb16': ('u2', 2, 1),
    'bayer_bggr16': ('u2', 2, 1),
    'bayer_gbrg16': ('u2', 2, 1),
    'bayer_grbg16': ('u2', 2, 1),
    'uyvy': ('u1', 1, 2),
    'yuyv': ('u1', 1, 2),
    'yuv422': ('u1', 1, 2),
    'yuv422_yuy2': ('u1', 1, 2),
}
# Full-scale value of each encoding's samples (what maps to 1.0).
FULL_SCALE = {encoding: 255.0 for encoding, (base, _, _) in _LAYOUT.items() if base == 'u1'}
FULL_SCALE.update({encoding: 65535.0 for encoding, (base, _, _) in _LAYOUT.items()
                   if base == 'u2'})
FULL_SCALE['32FC1'] = 1.0
MONO_ENCODINGS = ('mono8', 'mono16', '32FC1')
MONO16_BITS_RANGE = (8, 16)     # significant bits a mono16 image may declare
# Raw colour-filter-array frames (one 8- or 16-bit sample per pixel, the first two rows' filter
# colours in the name), demosaiced by OpenCV. OpenCV names a pattern by the second row's second
# and third pixels, so ROS's bayer_rggb8 is OpenCV's BayerBG (as cv_bridge maps them).
_BAYER_CV = {'rggb': 'BG', 'bggr': 'RG', 'gbrg': 'GR', 'grbg': 'GB'}
BAYER_TO_RGB = {f'bayer_{ros}{bits}': getattr(cv2, f'COLOR_Bayer{cv}2RGB')
                for ros, cv in _BAYER_CV.items() for bits in (8, 16)}
BAYER_TO_GRAY = {f'bayer_{ros}{bits}': getattr(cv2, f'COLOR_Bayer{cv}2GRAY')
                 for ros, cv in _BAYER_CV.items() for bits in (8, 16)}
# Packed YUV 4:2:2, byte order in the name (ROS's deprecated yuv422 = uyvy, yuv422_yuy2 = yuyv).
YUV422_TO_RGB = {'uyvy': cv2.COLOR_YUV2RGB_UYVY, 'yuv422': cv2.COLOR_YUV2RGB_UYVY,
                 'yuyv': cv2.COLOR_YUV2RGB_YUYV, 'yuv422_yuy2': cv2.COLOR_YUV2RGB_YUYV}
# Encodings whose samples are not pixels' colours: one cv2 call turns them into RGB first.
RAW_TO_RGB = {**BAYER_TO_RGB, **YUV422_TO_RGB}
# Interleaved colour -> luma / -> RGB (8- and 16-bit samples alike).
_COLOUR_ORDERS = ('rgb', 'bgr', 'rgba', 'bgra')
COLOUR_TO_GRAY = {f'{order}{bits}': getattr(cv2, f'COLOR_{order.upper()}2GRAY')
                  for order in _COLOUR_ORDERS for bits in (8, 16)}
COLOUR_TO_RGB = {f'{order}{bits}': getattr(cv2, f'COLOR_{order.upper()}2RGB')
                 for order in _COLOUR_ORDERS[1:] for bits in (8, 16)}
# BT.601 luma weights (the ones cv2.cvtColor uses), in R, G, B order.
LUMA_RGB = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class ImageRejected(ValueError):
    """A frame that cannot be decoded. `.reason` is a short stable code (diagnostics key)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def bytes_per_pixel(encoding: str) -> int:
    _check_encoding(encoding)
    _, size, channels = _LAYOUT[encoding]
    return size * channels


def channels_of(encoding: str) -> int:
    _check_encoding(encoding)
    return _LAYOUT[encoding][2]


def _check_encoding(encoding) -> None:
    if encoding not in _LAYOUT:
        raise ImageRejected(
            'unsupported_encoding',
            f'image encoding {encoding!r} is not supported; supported encodings are '
            f'{", ".join(SUPPORTED_ENCODINGS)}')


def _as_int(value, field: str, reason: str) -> int:
    try:
        result = int(value)
        if result != value:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ImageRejected(reason, f'image {field} {value!r} is not a whole number') from None
    return result


def as_byte_buffer(data) -> np.ndarray:
    """A flat uint8 numpy view on `data` (copy only for sequences that are not buffers)."""
    if isinstance(data, np.ndarray):
        if data.dtype == np.uint8 and data.ndim == 1 and data.flags.c_contiguous:
            return data
        data = memoryview(np.ascontiguousarray(data))
    if isinstance(data, (bytes, bytearray, memoryview, _array.array)):
        try:
            view = memoryview(data)
            if not view.c_contiguous:
                raise ValueError('not contiguous')
            return np.frombuffer(view.cast('B') if view.format != 'B' or view.ndim != 1 else view,
                                 dtype=np.uint8)
        except (TypeError, ValueError) as exc:
            raise ImageRejected('bad_data', f'image data buffer cannot be read as bytes ({exc})') \
                from None
    if isinstance(data, str):
        raise ImageRejected('bad_data', 'image data is a text string, not bytes')
    try:
        return np.array(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise ImageRejected('bad_data',
                            'image data is not a sequence of integers in [0, 255]') from None


def image_to_array(encoding, height, width, step, is_bigendian, data, *,
                   max_pixels: int = 8192 * 8192) -> np.ndarray:
    """Decode Image fields into (H, W) (mono, 32FC1) or (H, W, C) array; a view when possible."""
    _check_encoding(encoding)
    base, size, channels = _LAYOUT[encoding]
    height = _as_int(height, 'height', 'zero_size')
    width = _as_int(width, 'width', 'zero_size')
    if height <= 0 or width <= 0:
        raise ImageRejected('zero_size',
                            f'image has no pixels: width {width}, height {height}')
    if encoding in YUV422_TO_RGB and width % 2:
        raise ImageRejected(
            'odd_width', f'{encoding} image width {width} is odd; YUV 4:2:2 packs one chroma '
            f'pair per two pixels, so the width must be even')
    if height * width > max_pixels:
        raise ImageRejected(
            'too_large', f'image of {width} x {height} = {width * height} pixels is larger '
            f'than the limit of {max_pixels} pixels')
    step = _as_int(step, 'step', 'step_too_small')
    row_bytes = width * size * channels
    if step < row_bytes:
        raise ImageRejected(
            'step_too_small', f'image step {step} bytes is smaller than one row of '
            f'{width} {encoding} pixels ({row_bytes} bytes)')
    buf = as_byte_buffer(data)
    if buf.size != step * height:
        raise ImageRejected(
            'data_length', f'image data holds {buf.size} bytes but step {step} x height {height} '
            f'needs {step * height}')
    order = '>' if (is_bigendian and size > 1) else '<'
    dtype = np.dtype(order + base) if size > 1 else np.dtype(np.uint8)
    if channels == 1:
        shape, strides = (height, width), (step, size)
    else:
        shape, strides = (height, width, channels), (step, size * channels, size)
    if step == row_bytes:   # no padding: a plain reshape of the buffer
        arr = buf.view(dtype).reshape(shape)
    else:                   # padded rows: the step becomes the row stride
        arr = np.ndarray(shape, dtype=dtype, buffer=buf, offset=0, strides=strides)
        if step % dtype.itemsize:   # rows not aligned to the element size: OpenCV and torch
            arr = np.ascontiguousarray(arr)   # refuse such strides, so copy the pixels out
    if encoding == '32FC1' and not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ImageRejected('non_finite',
                            f'32FC1 image has {bad} NaN or infinite value(s) of {arr.size}')
    return arr


def _native(array: np.ndarray, dtype) -> np.ndarray:
    """`array` as the native-byte-order `dtype` (no copy when it already is)."""
    dtype = np.dtype(dtype)
    if array.dtype == dtype:
        return array
    return array.astype(dtype)


def _check_shape(array: np.ndarray, encoding: str) -> None:
    _check_encoding(encoding)
    channels = _LAYOUT[encoding][2]
    ok = array.ndim == 2 if channels == 1 else (array.ndim == 3 and array.shape[2] == channels)
    if not ok:
        raise ValueError(f'array of shape {array.shape} does not fit encoding {encoding!r} '
                         f'({channels} channel(s))')
    if encoding in YUV422_TO_RGB and array.shape[1] % 2:
        raise ValueError(f'{encoding} array of width {array.shape[1]} is odd; YUV 4:2:2 needs '
                         f'an even width')


def array_to_image_fields(array: np.ndarray, encoding: str) -> dict:
    """Image fields for publishing: height, width, encoding, is_bigendian=0, step, data.

    `data` is a memoryview of a C-contiguous little-endian array (the array itself when it
    already is one: no copy). The array must hold values of the encoding's type range
    (uint8 for 8-bit, uint16 for mono16, float32 for 32FC1); other dtypes are converted.
    """
    array = np.asarray(array)
    _check_shape(array, encoding)
    base, size, channels = _LAYOUT[encoding]
    arr = _native(array, '<' + base if size > 1 else np.uint8)
    arr = np.ascontiguousarray(arr)
    height, width = arr.shape[:2]
    return {'height': int(height), 'width': int(width), 'encoding': encoding, 'is_bigendian': 0,
            'step': int(width * size * channels), 'data': memoryview(arr).cast('B')}


def byte_array(data) -> _array.array:
    """array.array('B') of a buffer (one copy): the type rclpy's Image.data takes fastest."""
    out = _array.array('B')
    out.frombytes(data)
    return out


def check_mono16_bits(bits) -> int:
    """`bits` as an int if it is a valid mono16 significant-bit count, else ValueError."""
    lo, hi = MONO16_BITS_RANGE
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not lo <= bits <= hi:
        raise ValueError(f'mono16 significant bits must be an integer in {lo}..{hi}, not {bits!r}')
    return int(bits)


def full_scale(encoding: str, mono16_bits: int = 16) -> float:
    """The sample value that maps to 1.0: FULL_SCALE, or 2**mono16_bits - 1 for mono16."""
    if encoding == 'mono16':
        return float((1 << check_mono16_bits(mono16_bits)) - 1)
    return FULL_SCALE[encoding]


def over_range(array: np.ndarray, encoding: str, mono16_bits: int = 16) -> bool:
    """True when a mono16 frame holds samples above 2**mono16_bits - 1 (never for 16 bits
    or other encodings): the camera's bit depth is not what was declared."""
    if encoding != 'mono16' or check_mono16_bits(mono16_bits) == 16 or array.size == 0:
        return False
    return int(array.max()) > (1 << mono16_bits) - 1


def _mono16_u8(array: np.ndarray, bits: int) -> np.ndarray:
    native = _native(array, np.uint16)
    if bits == 16:
        return (native >> 8).astype(np.uint8)
    return np.minimum(native >> (bits - 8), 255).astype(np.uint8)


def _sixteen_bit(encoding: str) -> bool:
    return _LAYOUT[encoding][0] == 'u2'


def _top_byte(samples: np.ndarray) -> np.ndarray:
    return (samples >> 8).astype(np.uint8)


def to_mono_samples(array: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W) luma of a colour, Bayer or YUV frame in the frame's own sample type (uint8 or
    uint16; full scale FULL_SCALE[encoding]): one cv2 call (two for YUV). Not for mono."""
    _check_shape(array, encoding)
    if encoding in MONO_ENCODINGS:
        raise ValueError(f'{encoding} is already mono: use to_mono_u8 / to_mono_float')
    if _sixteen_bit(encoding):
        array = _native(array, np.uint16)
    if encoding in BAYER_TO_GRAY:
        return cv2.cvtColor(array, BAYER_TO_GRAY[encoding])
    if encoding in YUV422_TO_RGB:   # luma of the converted RGB (full range), not the raw Y
        return cv2.cvtColor(cv2.cvtColor(array, YUV422_TO_RGB[encoding]), cv2.COLOR_RGB2GRAY)
    return cv2.cvtColor(array, COLOUR_TO_GRAY[encoding])


def to_rgb_samples(array: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W, 3) RGB of a colour, Bayer or YUV frame in the frame's own sample type (uint8 or
    uint16): a view for rgb8 (and native-order rgb16), one cv2 call otherwise. Not for mono."""
    _check_shape(array, encoding)
    if encoding in MONO_ENCODINGS:
        raise ValueError(f'{encoding} is mono: use to_rgb_u8 / to_rgb_float')
    if _sixteen_bit(encoding):
        array = _native(array, np.uint16)
    if encoding in ('rgb8', 'rgb16'):
        return array
    if encoding in RAW_TO_RGB:
        return cv2.cvtColor(array, RAW_TO_RGB[encoding])
    return cv2.cvtColor(array, COLOUR_TO_RGB[encoding])


def to_mono_u8(array: np.ndarray, encoding: str, mono16_bits: int = 16) -> np.ndarray:
    """(H, W) uint8. A view for mono8; one cv2 call for 8-bit colour; scaled for mono16/32FC1
    (mono16: its top 8 of `mono16_bits` significant bits, clipped); 16-bit colour and Bayer:
    the top byte of their luma."""
    _check_shape(array, encoding)
    if encoding == 'mono8':
        return array
    if encoding == 'mono16':
        return _mono16_u8(array, check_mono16_bits(mono16_bits))
    if encoding == '32FC1':
        f = np.clip(_native(array, np.float32), 0.0, 1.0)
        return np.rint(f * 255.0).astype(np.uint8)
    mono = to_mono_samples(array, encoding)
    return _top_byte(mono) if _sixteen_bit(encoding) else mono


def to_rgb_u8(array: np.ndarray, encoding: str, mono16_bits: int = 16) -> np.ndarray:
    """(H, W, 3) uint8 RGB. A view for rgb8; one cv2 call otherwise (mono replicated); 16-bit
    colour and Bayer: the top byte of their RGB."""
    _check_shape(array, encoding)
    if encoding == 'mono8':
        return cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
    if encoding in ('mono16', '32FC1'):
        return cv2.cvtColor(to_mono_u8(array, encoding, mono16_bits), cv2.COLOR_GRAY2RGB)
    rgb = to_rgb_samples(array, encoding)
    return _top_byte(rgb) if _sixteen_bit(encoding) else rgb


def to_mono_float(array: np.ndarray, encoding: str, mono16_bits: int = 16) -> np.ndarray:
    """(H, W) float32 in [0, 1]: mono8 / 255, mono16 / (2**mono16_bits - 1) (clipped), 32FC1
    clipped, colour -> luma (Bayer, YUV: of the converted RGB; 16-bit colour / 65535)."""
    _check_shape(array, encoding)
    if encoding in MONO_ENCODINGS:
        f = _native(array, np.float32)
        if encoding == '32FC1':
            return np.clip(f, 0.0, 1.0)
        scaled = f * np.float32(1.0 / full_scale(encoding, mono16_bits))
        return np.minimum(scaled, 1.0) if encoding == 'mono16' and mono16_bits != 16 else scaled
    rgb = to_rgb_samples(array, encoding)
    weights = LUMA_RGB / np.float32(FULL_SCALE[encoding])
    return np.clip(rgb.astype(np.float32) @ weights, 0.0, 1.0).astype(np.float32)


def to_rgb_float(array: np.ndarray, encoding: str, mono16_bits: int = 16) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1], RGB order: mono replicated, BGR swapped, alpha dropped,
    Bayer demosaiced, YUV converted, 16-bit colour / 65535."""
    _check_shape(array, encoding)
    if encoding in MONO_ENCODINGS:
        mono = to_mono_float(array, encoding, mono16_bits)
        return np.repeat(mono[:, :, None], 3, axis=2)
    rgb = to_rgb_samples(array, encoding)
    return rgb.astype(np.float32) * np.float32(1.0 / FULL_SCALE[encoding])
