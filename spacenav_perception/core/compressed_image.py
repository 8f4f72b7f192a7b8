"""sensor_msgs/CompressedImage fields (format, data) <-> numpy arrays. ROS-free.

Bandwidth-limited links and most recorded bags carry camera frames as `CompressedImage`
(image_transport's `compressed` transport, on `<image topic>/compressed`). This module decodes
their PNG and JPEG payloads into the same (array, encoding) pairs that `image_codec` gives for
raw `Image` messages, so everything downstream is shared.

`format` is either a bare codec name ("png", "jpeg") or image_transport's
"<original encoding>; <codec> compressed [<encoding of the payload>]", for example
"rgb8; jpeg compressed bgr8" or "mono16; png compressed ". What the payload decodes to decides
the encoding (OpenCV decodes colour as BGR): 1 channel -> mono8 / mono16, 3 channels -> bgr8 /
bgr16, 4 -> bgra8 / bgra16 (by the payload's bit depth); except that a 1-channel payload whose
original encoding is a raw Bayer pattern of the same depth (bayer_rggb8, bayer_rggb16, ...)
keeps that encoding, so it is demosaiced downstream as the raw frame would be (a Bayer original
of the other depth is rejected: its pattern cannot be trusted). Depth images
("compressedDepth") are rejected.

`decode_compressed` checks before decoding, and raises `image_codec.ImageRejected` with:

    bad_data             data is empty or not a byte buffer
    unsupported_format   neither a PNG nor a JPEG stream (by its signature), or a
                         compressedDepth payload
    too_large            the stream's header declares more than max_pixels pixels (read from
                         the PNG IHDR / JPEG SOF header, so a small file that would inflate to
                         a huge image is refused without decoding it)
    zero_size            the header declares no pixels
    decode_failed        OpenCV cannot decode it (truncated or corrupt)
    unsupported_encoding the payload decodes to something no model input takes (2 channels,
                         a Bayer original of another depth)
"""
from __future__ import annotations

import struct

import cv2
import numpy as np

from .image_codec import BAYER_TO_RGB, ImageRejected, as_byte_buffer

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
JPEG_SIGNATURE = b'\xff\xd8'
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic), not DHT/JPG/DAC.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_NO_LENGTH = frozenset([0x01, 0xD8] + list(range(0xD0, 0xD8)))


def original_encoding(fmt: str) -> str:
    """The original encoding in an image_transport format ('' for a bare codec name)."""
    text = str(fmt or '')
    return text.split(';', 1)[0].strip() if ';' in text else ''


def stream_size(data: bytes) -> tuple[str, int, int]:
    """(codec, width, height) from a PNG or JPEG header, without decoding the pixels."""
    head = bytes(data[:32])
    if head.startswith(PNG_SIGNATURE):
        if len(data) < 24 or bytes(data[12:16]) != b'IHDR':
            raise ImageRejected('decode_failed', 'PNG stream has no IHDR header')
        width, height = struct.unpack('>II', bytes(data[16:24]))
        return 'png', width, height
    if head.startswith(JPEG_SIGNATURE):
        return ('jpeg',) + _jpeg_size(data)
    raise ImageRejected('unsupported_format',
                        'compressed data is neither a PNG nor a JPEG stream (first bytes '
                        f'{head[:8].hex()})')


def _jpeg_size(data) -> tuple[int, int]:
    data = memoryview(data).cast('B')      # indexing gives Python ints (no uint8 overflow)
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xFF:          # fill byte before a marker
            i += 1
            continue
        if marker in _JPEG_NO_LENGTH:
            i += 2
            continue
        if marker == 0xDA:          # start of scan before any frame header
            break
        length = (data[i + 2] << 8) | data[i + 3]
        if marker in _JPEG_SOF:
            if i + 9 > n:
                break
            height = (data[i + 5] << 8) | data[i + 6]
            width = (data[i + 7] << 8) | data[i + 8]
            return width, height
        i += 2 + length
    raise ImageRejected('decode_failed', 'JPEG stream has no readable frame header')


def _encoding_of(decoded: np.ndarray, original: str) -> str:
    channels = 1 if decoded.ndim == 2 else decoded.shape[2]
    depth = {np.dtype(np.uint8): '8', np.dtype(np.uint16): '16'}.get(decoded.dtype)
    if depth is not None:
        if channels == 1:       # a raw Bayer frame keeps its pattern when the depth agrees
            if original in BAYER_TO_RGB and original.endswith(depth):
                return original
            if not original.startswith('bayer_'):
                return 'mono8' if depth == '8' else 'mono16'
        if channels in (3, 4):
            return ('bgr' if channels == 3 else 'bgra') + depth
    raise ImageRejected(
        'unsupported_encoding', f'compressed frame decodes to {channels} channel(s) of '
        f'{decoded.dtype} (original encoding {original or "not given"}); supported: 8- or '
        '16-bit mono, BGR or BGRA, and raw Bayer of the depth its name says')


def decode_compressed(fmt: str, data, *, max_pixels: int = 8192 * 8192) -> tuple[np.ndarray, str]:
    """(array, encoding) of a CompressedImage's payload; raises ImageRejected."""
    buf = as_byte_buffer(data)
    if buf.size == 0:
        raise ImageRejected('bad_data', 'compressed image has no data')
    if 'compresseddepth' in str(fmt or '').lower():
        raise ImageRejected('unsupported_format',
                            f'compressed depth images ({fmt!r}) are not camera frames')
    codec, width, height = stream_size(buf)
    if width <= 0 or height <= 0:
        raise ImageRejected('zero_size', f'{codec} stream declares no pixels: width {width}, '
                                         f'height {height}')
    if width * height > max_pixels:
        raise ImageRejected(
            'too_large', f'{codec} stream of {width} x {height} = {width * height} pixels is '
            f'larger than the limit of {max_pixels} pixels')
    decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        raise ImageRejected('decode_failed', f'{codec} stream of {len(buf)} bytes cannot be '
                                             'decoded (truncated or corrupt)')
    if decoded.shape[:2] != (height, width):
        raise ImageRejected('decode_failed', f'{codec} stream decodes to {decoded.shape[1]} x '
                                             f'{decoded.shape[0]}, its header says {width} x '
                                             f'{height}')
    return decoded, _encoding_of(decoded, original_encoding(fmt))


def encode_compressed(array: np.ndarray, encoding: str, codec: str = 'png',
                      jpeg_quality: int = 95) -> tuple[str, bytes]:
    """(format, data) of a CompressedImage holding `array`, as image_transport writes them
    ("<encoding>; png compressed bgr8"); colour is stored as BGR. For tests, bags and demos."""
    array = np.ascontiguousarray(array)
    if encoding in ('rgb8', 'rgba8', 'rgb16', 'rgba16'):
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA if encoding.startswith('rgba')
                             else cv2.COLOR_RGB2BGR)
    if codec not in ('png', 'jpeg'):
        raise ValueError(f'codec must be png or jpeg, not {codec!r}')
    if codec == 'jpeg' and array.dtype != np.uint8:   # OpenCV would clip it to 8 bits
        raise ValueError(f'JPEG holds 8-bit samples only; a {encoding} ({array.dtype}) frame '
                         'needs png')
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if codec == 'jpeg' else []
    ok, payload = cv2.imencode('.png' if codec == 'png' else '.jpg', array, params)
    if not ok:
        raise ValueError(f'OpenCV cannot encode a {array.dtype} {array.shape} array as {codec}')
    colour = array.ndim == 3
    depth = '16' if array.dtype == np.uint16 else '8'
    payload_encoding = ('bgra' if array.shape[2] == 4 else 'bgr') + depth if colour else ''
    return f'{encoding}; {codec} compressed {payload_encoding}', payload.tobytes()
