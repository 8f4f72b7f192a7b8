"""core/compressed_image: CompressedImage payloads (PNG, JPEG) -> (array, encoding), and every
rejection, checked before the pixels are decoded where the header allows."""
import struct
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacenav_perception.core import compressed_image
from spacenav_perception.core.compressed_image import (decode_compressed, encode_compressed,
                                                       original_encoding, stream_size)
from spacenav_perception.core.image_codec import ImageRejected

RNG = np.random.default_rng(3)


@pytest.mark.parametrize('encoding, array, want_encoding', [
    ('mono8', RNG.integers(0, 256, (30, 41), dtype=np.uint8), 'mono8'),
    ('mono16', RNG.integers(0, 65536, (30, 41), dtype=np.uint16), 'mono16'),
    ('bgr8', RNG.integers(0, 256, (30, 41, 3), dtype=np.uint8), 'bgr8'),
    ('bgra8', RNG.integers(0, 256, (30, 41, 4), dtype=np.uint8), 'bgra8'),
    ('bayer_grbg8', RNG.integers(0, 256, (30, 42), dtype=np.uint8), 'bayer_grbg8'),
    ('bgr16', RNG.integers(0, 65536, (30, 41, 3), dtype=np.uint16), 'bgr16'),
    ('bgra16', RNG.integers(0, 65536, (30, 41, 4), dtype=np.uint16), 'bgra16'),
    ('bayer_rggb16', RNG.integers(0, 65536, (30, 42), dtype=np.uint16), 'bayer_rggb16'),
])
def test_png_round_trip_is_lossless(encoding, array, want_encoding):
    fmt, data = encode_compressed(array, encoding, 'png')
    assert fmt.startswith(f'{encoding}; png compressed')
    decoded, got_encoding = decode_compressed(fmt, data)
    assert got_encoding == want_encoding and decoded.dtype == array.dtype
    np.testing.assert_array_equal(decoded, array)


def test_rgb_is_stored_and_decoded_as_bgr():
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 200                                 # pure red
    fmt, data = encode_compressed(rgb, 'rgb8')
    assert fmt == 'rgb8; png compressed bgr8'
    decoded, encoding = decode_compressed(fmt, data)
    assert encoding == 'bgr8'
    np.testing.assert_array_equal(decoded[..., 2], 200)   # red is the last channel of BGR
    np.testing.assert_array_equal(decoded[..., :2], 0)


def test_jpeg_decodes_close_to_the_frame_and_bare_formats_work():
    rows, cols = np.mgrid[:300, :700]
    smooth = (127 + 100 * np.sin(rows / 40.0) * np.cos(cols / 60.0)).astype(np.uint8)
    fmt, data = encode_compressed(smooth, 'mono8', 'jpeg')
    assert stream_size(data) == ('jpeg', 700, 300)   # sizes above 255 read big endian
    for given in (fmt, 'jpeg', ''):
        decoded, encoding = decode_compressed(given, data)
        assert encoding == 'mono8' and decoded.shape == (300, 700)
        assert np.abs(decoded.astype(int) - smooth).mean() < 2.0


def test_jpeg_size_found_after_long_segments():
    """The frame header may follow EXIF / comment segments of any length."""
    _, data = encode_compressed(np.full((260, 270), 90, np.uint8), 'mono8', 'jpeg')
    comment = b'x' * 1000
    with_comment = data[:2] + b'\xff\xfe' + struct.pack('>H', len(comment) + 2) + comment + data[2:]
    assert stream_size(with_comment) == ('jpeg', 270, 260)
    decoded, _ = decode_compressed('jpeg', with_comment)
    assert decoded.shape == (260, 270)


def test_original_encoding_parsing():
    assert original_encoding('rgb8; jpeg compressed bgr8') == 'rgb8'
    assert original_encoding('bayer_rggb8; png compressed ') == 'bayer_rggb8'
    assert original_encoding('jpeg') == '' and original_encoding(None) == ''


def png_header_only(width, height):
    """A PNG signature and IHDR declaring width x height, with a tiny (wrong) body."""
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack('>I', len(ihdr)) + b'IHDR' + ihdr
    chunk += struct.pack('>I', zlib.crc32(b'IHDR' + ihdr))
    return compressed_image.PNG_SIGNATURE + chunk + b'\x00' * 16


def test_huge_declared_size_is_refused_without_decoding(monkeypatch):
    def must_not_decode(*args):
        raise AssertionError('decoded a frame that the header already rules out')
    monkeypatch.setattr(compressed_image.cv2, 'imdecode', must_not_decode)
    with pytest.raises(ImageRejected) as info:
        decode_compressed('png', png_header_only(100_000, 100_000))
    assert info.value.reason == 'too_large' and '100000 x 100000' in info.value.message
    with pytest.raises(ImageRejected) as info:
        decode_compressed('png', png_header_only(0, 10))
    assert info.value.reason == 'zero_size'


@pytest.mark.parametrize('fmt, data, reason, words', [
    ('png', b'', 'bad_data', 'no data'),
    ('png', 'text', 'bad_data', 'text string'),
    ('png', b'GIF89a' + bytes(40), 'unsupported_format', 'neither a PNG nor a JPEG'),
    ('16UC1; compressedDepth png', b'\x89PNG' + bytes(40), 'unsupported_format', 'depth'),
    ('png', compressed_image.PNG_SIGNATURE + bytes(8), 'decode_failed', 'IHDR'),
    ('jpeg', b'\xff\xd8\xff\xda' + bytes(20), 'decode_failed', 'frame header'),
])
def test_every_rejection_reason(fmt, data, reason, words):
    with pytest.raises(ImageRejected) as info:
        decode_compressed(fmt, data)
    assert info.value.reason == reason and words in info.value.message


def test_truncated_and_corrupt_streams_are_rejected():
    frame = RNG.integers(0, 256, (40, 50), dtype=np.uint8)
    _, png = encode_compressed(frame, 'mono8', 'png')
    _, jpeg = encode_compressed(frame, 'mono8', 'jpeg')
    for codec, data in (('png', png[:len(png) // 2]), ('jpeg', jpeg[:200])):
        with pytest.raises(ImageRejected) as info:
            decode_compressed(codec, data)
        assert info.value.reason == 'decode_failed', codec
    lying = bytearray(png_header_only(40, 50))          # header 40 x 50, body of another image
    ok, other = cv2.imencode('.png', np.zeros((10, 10), np.uint8))
    with pytest.raises(ImageRejected) as info:
        decode_compressed('png', bytes(lying[:33]) + other.tobytes()[33:])
    assert info.value.reason == 'decode_failed'


def test_sixteen_bit_rgb_is_stored_and_decoded_as_bgr16():
    rgb = np.zeros((4, 6, 3), np.uint16)
    rgb[..., 0] = 51234                               # pure red, beyond 8 bits of precision
    fmt, data = encode_compressed(rgb, 'rgb16')
    assert fmt == 'rgb16; png compressed bgr16'
    decoded, encoding = decode_compressed(fmt, data)
    assert encoding == 'bgr16' and decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded[..., 2], 51234)
    np.testing.assert_array_equal(decoded[..., :2], 0)


def test_bayer_original_of_another_depth_is_rejected_with_the_reason():
    """A 16-bit Bayer frame that arrives as an 8-bit payload (or the other way round) has lost
    what its pattern name promises: refused, not demosaiced as something else."""
    for original, dtype in (('bayer_rggb16', np.uint8), ('bayer_rggb8', np.uint16)):
        ok, data = cv2.imencode('.png', np.zeros((4, 4), dtype))
        with pytest.raises(ImageRejected) as info:
            decode_compressed(f'{original}; png compressed ', data.tobytes())
        assert info.value.reason == 'unsupported_encoding'
        assert np.dtype(dtype).name in info.value.message and original in info.value.message


def test_sixteen_bit_frames_are_not_squeezed_into_jpeg():
    with pytest.raises(ValueError, match='needs png'):
        encode_compressed(np.full((4, 4), 40000, np.uint16), 'mono16', 'jpeg')


def test_max_pixels_is_the_callers():
    _, data = encode_compressed(np.zeros((10, 10), np.uint8), 'mono8')
    with pytest.raises(ImageRejected, match='limit of 99 pixels'):
        decode_compressed('png', data, max_pixels=99)
    assert decode_compressed('png', data, max_pixels=100)[0].shape == (10, 10)


def _valid_streams():
    rows, cols = np.mgrid[:48, :64]
    mono = ((rows * 3 + cols * 2) % 256).astype(np.uint8)
    colour = np.dstack([mono, mono[::-1], 255 - mono])
    return [encode_compressed(a, e, c)[1] for a, e in ((mono, 'mono8'), (colour, 'bgr8'))
            for c in ('png', 'jpeg')]


VALID_STREAMS = _valid_streams()
REASONS = {'bad_data', 'unsupported_format', 'too_large', 'zero_size', 'decode_failed',
           'unsupported_encoding'}


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, len(VALID_STREAMS) - 1), cut=st.integers(0, 4000),
       flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=6),
       fmt=st.sampled_from(['png', 'jpeg', 'mono8; png compressed ', 'rgb8; jpeg compressed bgr8',
                            'bayer_rggb8; png compressed ', '']))
def test_damaged_streams_decode_or_are_rejected(which, cut, flips, fmt):
    """Truncated or bit-flipped PNG/JPEG streams never raise anything but ImageRejected with a
    known reason; what decodes has the size its header declares."""
    data = bytearray(VALID_STREAMS[which][:max(cut, 1)] if cut else VALID_STREAMS[which])
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    try:
        array, encoding = decode_compressed(fmt, bytes(data), max_pixels=10_000)
    except ImageRejected as exc:
        assert exc.reason in REASONS, exc.reason
        return
    codec, width, height = stream_size(bytes(data))
    assert array.shape[:2] == (height, width)
    assert encoding in ('mono8', 'bgr8', 'bgra8', 'mono16', 'bgr16', 'bgra16', 'bayer_rggb8')
