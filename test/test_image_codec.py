"""core/image_codec: round trips, zero-copy views, every rejection reason, property test."""
import array

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacenav_perception.core.image_codec import (
    SUPPORTED_ENCODINGS, YUV422_TO_RGB, ImageRejected, array_to_image_fields, byte_array, bytes_per_pixel,
    full_scale, image_to_array, over_range, to_mono_float, to_mono_u8, to_rgb_float, to_rgb_u8)

# Where each ROS Bayer pattern puts R, G, B in a 2x2 cell: (row, col) of R, of B (G elsewhere).
BAYER_CELLS = {'bayer_rggb8': ((0, 0), (1, 1)), 'bayer_bggr8': ((1, 1), (0, 0)),
               'bayer_gbrg8': ((1, 0), (0, 1)), 'bayer_grbg8': ((0, 1), (1, 0))}


def mosaic(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """The raw frame a colour-filter-array camera of this pattern records of `rgb`."""
    (ry, rx), (by, bx) = BAYER_CELLS[encoding]
    raw = rgb[..., 1].copy()
    raw[ry::2, rx::2] = rgb[ry::2, rx::2, 0]
    raw[by::2, bx::2] = rgb[by::2, bx::2, 2]
    return raw

RNG = np.random.default_rng(7)


def yuv422_frame(y, u, v, encoding, h=4, w=6):
    """A flat (Y, U, V) frame in the encoding's packed 4:2:2 byte order, (h, w, 2)."""
    pair = {'uyvy': (u, y, v, y), 'yuv422': (u, y, v, y),
            'yuyv': (y, u, y, v), 'yuv422_yuy2': (y, u, y, v)}[encoding]
    return np.tile(np.array(pair, np.uint8), (h, w // 2)).reshape(h, w, 2)


def bt601_video_rgb(y, u, v):
    """RGB of a BT.601 limited-range ("video") YUV sample, by the standard's formula."""
    c, d, e = 1.164 * (y - 16), u - 128, v - 128
    return np.clip([c + 1.596 * e, c - 0.391 * d - 0.813 * e, c + 2.018 * d], 0, 255)


def sample_array(encoding, h=5, w=7):
    if encoding in YUV422_TO_RGB:       # two bytes per pixel, an even width
        return RNG.integers(0, 256, (h, w + w % 2, 2), dtype=np.uint8)
    if encoding == '32FC1':
        return RNG.random((h, w), dtype=np.float32)
    top, dtype = (65536, np.uint16) if encoding.endswith('16') else (256, np.uint8)
    if encoding.startswith(('mono', 'bayer_')):
        return RNG.integers(0, top, (h, w), dtype=dtype)
    channels = 4 if encoding.startswith(('rgba', 'bgra')) else 3
    return RNG.integers(0, top, (h, w, channels), dtype=dtype)


def padded_bytes(arr, pad, big_endian=False):
    """Serialise an (H, W[, C]) array with `pad` bytes of padding after each row."""
    if arr.dtype.itemsize > 1:
        arr = arr.astype(arr.dtype.newbyteorder('>' if big_endian else '<'))
    rows = arr.reshape(arr.shape[0], -1).view(np.uint8).reshape(arr.shape[0], -1)
    out = np.full((arr.shape[0], rows.shape[1] + pad), 0xAB, np.uint8)
    out[:, :rows.shape[1]] = rows
    return out.tobytes(), rows.shape[1] + pad


@pytest.mark.parametrize('encoding', SUPPORTED_ENCODINGS)
def test_round_trip_every_encoding(encoding):
    arr = sample_array(encoding)
    fields = array_to_image_fields(arr, encoding)
    assert fields['step'] == arr.shape[1] * bytes_per_pixel(encoding)
    assert fields['is_bigendian'] == 0 and fields['encoding'] == encoding
    back = image_to_array(fields['encoding'], fields['height'], fields['width'], fields['step'],
                          fields['is_bigendian'], bytes(fields['data']))
    np.testing.assert_array_equal(back, arr)


@pytest.mark.parametrize('encoding', SUPPORTED_ENCODINGS)
@pytest.mark.parametrize('big_endian', [False, True])
def test_padded_step_is_a_strided_view(encoding, big_endian):
    arr = sample_array(encoding)
    data, step = padded_bytes(arr, pad=4, big_endian=big_endian)   # rows stay element-aligned
    buf = bytearray(data)
    out = image_to_array(encoding, arr.shape[0], arr.shape[1], step, int(big_endian), buf)
    np.testing.assert_array_equal(out, arr)
    assert np.shares_memory(out, np.frombuffer(buf, np.uint8))
    assert out.strides[0] == step


@pytest.mark.parametrize('encoding', ['mono16', '32FC1'])
@pytest.mark.parametrize('big_endian', [False, True])
def test_step_not_a_multiple_of_the_element_size_is_copied_out(encoding, big_endian):
    # A legal message (step >= row bytes) whose rows start mid-element: OpenCV and torch refuse
    # such strides, so the decoder must hand the nodes a contiguous copy with the same pixels.
    import cv2
    arr = sample_array(encoding)
    data, step = padded_bytes(arr, pad=3, big_endian=big_endian)
    assert step % arr.dtype.itemsize
    out = image_to_array(encoding, arr.shape[0], arr.shape[1], step, int(big_endian),
                         bytearray(data))
    np.testing.assert_array_equal(out, arr)
    assert out.flags['C_CONTIGUOUS']
    assert cv2.resize(to_mono_float(out, encoding), (4, 4), interpolation=cv2.INTER_AREA).shape \
        == (4, 4)


@pytest.mark.parametrize('encoding,dtype', [('mono16', '>u2'), ('32FC1', '>f4')])
def test_big_endian_is_a_view_with_byte_order_dtype(encoding, dtype):
    arr = sample_array(encoding).astype(dtype)
    buf = bytearray(arr.tobytes())
    out = image_to_array(encoding, arr.shape[0], arr.shape[1], arr.shape[1] * arr.itemsize, 1, buf)
    assert out.dtype == np.dtype(dtype)
    assert np.shares_memory(out, np.frombuffer(buf, np.uint8))
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize('make', [bytes, bytearray, memoryview, lambda b: array.array('B', b)])
def test_zero_copy_for_buffer_types(make):
    arr = sample_array('rgb8')
    data = make(arr.tobytes())
    out = image_to_array('rgb8', 5, 7, 21, 0, data)
    np.testing.assert_array_equal(out, arr)
    assert np.shares_memory(out, np.frombuffer(data, np.uint8))


def test_list_data_is_accepted():
    arr = sample_array('mono8')
    out = image_to_array('mono8', 5, 7, 7, 0, list(arr.tobytes()))
    np.testing.assert_array_equal(out, arr)


def test_encoding_fields_share_memory_with_contiguous_array():
    arr = sample_array('mono16')
    fields = array_to_image_fields(arr, 'mono16')
    assert np.shares_memory(np.frombuffer(fields['data'], np.uint8), arr)
    assert bytes(byte_array(fields['data'])) == arr.astype('<u2').tobytes()


@pytest.mark.parametrize('args,reason,words', [
    (('nv21', 2, 2, 4, 0, bytes(8)), 'unsupported_encoding', 'nv21'),
    (('uyvy', 2, 3, 6, 0, bytes(12)), 'odd_width', 'width 3 is odd'),
    (('mono8', 0, 4, 4, 0, b''), 'zero_size', 'height 0'),
    (('mono8', 4, 0, 0, 0, b''), 'zero_size', 'width 0'),
    (('mono16', 2, 4, 7, 0, bytes(14)), 'step_too_small', 'step 7'),
    (('rgb8', 2, 2, 6, 0, bytes(11)), 'data_length', '11 bytes'),
    (('mono8', 100, 100, 100, 0, bytes(10000)), 'too_large', '10000 pixels'),
    (('32FC1', 1, 2, 8, 0, np.array([0.5, np.nan], np.float32).tobytes()), 'non_finite', 'NaN'),
    (('32FC1', 1, 2, 8, 1, np.array([np.inf, 0], '>f4').tobytes()), 'non_finite', '1 NaN'),
])
def test_every_rejection_reason(args, reason, words):
    with pytest.raises(ImageRejected) as info:
        image_to_array(*args, max_pixels=5000)
    assert info.value.reason == reason
    assert words in str(info.value)


def test_float_and_u8_conversions():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)
    bgr = rgb[..., ::-1].copy()
    rgba = np.concatenate([rgb, np.full((1, 4, 1), 7, np.uint8)], axis=2)
    bgra = np.concatenate([bgr, np.full((1, 4, 1), 7, np.uint8)], axis=2)
    expected_rgb = rgb.astype(np.float32) / 255
    expected_mono = expected_rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    for arr, enc in [(rgb, 'rgb8'), (bgr, 'bgr8'), (rgba, 'rgba8'), (bgra, 'bgra8')]:
        np.testing.assert_allclose(to_rgb_float(arr, enc), expected_rgb, atol=1e-7)
        np.testing.assert_allclose(to_mono_float(arr, enc), expected_mono, atol=1e-6)
        np.testing.assert_array_equal(to_rgb_u8(arr, enc), rgb)
        np.testing.assert_allclose(to_mono_u8(arr, enc), expected_mono * 255, atol=1)
    mono16 = np.array([[0, 65535, 32768]], '>u2')
    np.testing.assert_allclose(to_mono_float(mono16, 'mono16'), [[0, 1, 32768 / 65535]])
    assert to_rgb_float(mono16, 'mono16').shape == (1, 3, 3)
    f = np.array([[-0.5, 0.25, 2.0]], np.float32)
    np.testing.assert_array_equal(to_mono_float(f, '32FC1'), [[0, 0.25, 1]])
    mono8 = np.array([[0, 51, 255]], np.uint8)
    assert to_mono_u8(mono8, 'mono8') is mono8
    assert to_mono_float(mono8, 'mono8').dtype == np.float32
    np.testing.assert_array_equal(to_rgb_u8(mono8, 'mono8')[..., 2], mono8)


@settings(max_examples=300, deadline=None)
@given(encoding=st.one_of(st.sampled_from(SUPPORTED_ENCODINGS), st.text(max_size=6)),
       height=st.integers(-2, 6), width=st.integers(-2, 6), pad=st.integers(-3, 5),
       big=st.integers(0, 1), extra=st.integers(-2, 2),
       kind=st.sampled_from(['bytes', 'bytearray', 'memoryview', 'array', 'list']),
       seed=st.integers(0, 2 ** 16), special=st.booleans())
def test_every_frame_converts_or_is_rejected(encoding, height, width, pad, big, extra, kind,
                                             seed, special):
    bpp = bytes_per_pixel(encoding) if encoding in SUPPORTED_ENCODINGS else 1
    step = max(width, 0) * bpp + pad
    n = max(step * max(height, 0) + extra, 0)
    raw = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8)
    if special and encoding == '32FC1' and n >= 4:
        raw[:4] = np.frombuffer(np.float32(np.nan).tobytes(), np.uint8)
    data = {'bytes': bytes, 'bytearray': bytearray, 'memoryview': lambda b: memoryview(b),
            'array': lambda b: array.array('B', b), 'list': list}[kind](raw.tobytes())
    try:
        arr = image_to_array(encoding, height, width, step, big, data, max_pixels=30)
    except ImageRejected as exc:
        assert exc.reason in ('unsupported_encoding', 'zero_size', 'step_too_small',
                              'data_length', 'too_large', 'non_finite', 'odd_width')
        return
    assert arr.shape[:2] == (height, width)
    mono = to_mono_float(arr, encoding)
    rgb = to_rgb_float(arr, encoding)
    assert mono.shape == (height, width) and rgb.shape == (height, width, 3)
    assert np.all((mono >= 0) & (mono <= 1)) and np.all((rgb >= 0) & (rgb <= 1))
    fields = array_to_image_fields(arr, encoding)
    again = image_to_array(encoding, fields['height'], fields['width'], fields['step'], 0,
                           fields['data'])
    np.testing.assert_array_equal(again, arr)


def test_mono16_significant_bits():
    """A 12-bit camera's unshifted samples: full scale 4095, larger samples clipped (and
    reported by over_range); 16 bits (the default) is the whole range."""
    assert full_scale('mono16') == 65535.0 and full_scale('mono16', 12) == 4095.0
    assert full_scale('mono8', 12) == 255.0               # only mono16 has a bit depth
    twelve = np.array([[0, 2048, 4095, 4096, 65535]], '>u2')
    np.testing.assert_allclose(to_mono_float(twelve, 'mono16', 12),
                               [[0, 2048 / 4095, 1, 1, 1]], rtol=1e-6)
    np.testing.assert_array_equal(to_mono_u8(twelve, 'mono16', 12), [[0, 128, 255, 255, 255]])
    np.testing.assert_array_equal(to_rgb_u8(twelve, 'mono16', 12)[0, :, 1], [0, 128, 255, 255, 255])
    np.testing.assert_array_equal(to_mono_u8(twelve, 'mono16'), [[0, 8, 15, 16, 255]])
    assert over_range(twelve, 'mono16', 12) and not over_range(twelve[:, :3], 'mono16', 12)
    assert not over_range(twelve, 'mono16') and not over_range(twelve, 'mono8', 12)
    eight = np.array([[0, 255, 256]], np.uint16)
    np.testing.assert_array_equal(to_mono_u8(eight, 'mono16', 8), [[0, 255, 255]])
    for bad in (7, 17, 12.0, True, '12'):
        with pytest.raises(ValueError, match='significant bits'):
            full_scale('mono16', bad)


@pytest.mark.parametrize('encoding', sorted(BAYER_CELLS))
def test_bayer_patterns_demosaic_to_their_colours(encoding):
    """A flat colour seen through each pattern comes back as that colour (in the interior,
    where the demosaicing has all neighbours), and mono is its BT.601 luma."""
    colour = np.array([200, 100, 30], np.uint8)
    raw = mosaic(np.broadcast_to(colour, (8, 10, 3)), encoding)
    rgb = to_rgb_u8(raw, encoding)
    assert rgb.shape == (8, 10, 3)
    np.testing.assert_array_equal(rgb[2:-2, 2:-2], np.broadcast_to(colour, (4, 6, 3)))
    luma = float(colour @ np.array([0.299, 0.587, 0.114]))
    np.testing.assert_allclose(to_mono_u8(raw, encoding)[2:-2, 2:-2], luma, atol=1)
    np.testing.assert_allclose(to_mono_float(raw, encoding)[2:-2, 2:-2], luma / 255, atol=1e-3)
    np.testing.assert_allclose(to_rgb_float(raw, encoding)[2:-2, 2:-2],
                               np.broadcast_to(colour / 255, (4, 6, 3)), atol=1e-6)


@pytest.mark.parametrize('encoding', sorted(YUV422_TO_RGB))
def test_yuv422_frames_convert_with_bt601_video_range(encoding):
    """A flat YUV colour in each packed 4:2:2 byte order comes back as the RGB of the BT.601
    limited-range formula (a swapped byte order would give another colour), and mono is the
    luma of that RGB, not the raw Y byte."""
    y, u, v = 200, 100, 140                   # an unclipped colour, luma far from Y
    frame = yuv422_frame(y, u, v, encoding)
    rgb = bt601_video_rgb(y, u, v)
    np.testing.assert_allclose(to_rgb_u8(frame, encoding), np.broadcast_to(rgb, (4, 6, 3)), atol=1)
    np.testing.assert_allclose(to_rgb_float(frame, encoding), np.broadcast_to(rgb / 255, (4, 6, 3)),
                               atol=1.5 / 255)
    luma = float(rgb @ np.array([0.299, 0.587, 0.114]))
    assert abs(luma - y) > 10                 # the test can tell luma of RGB from the Y byte
    np.testing.assert_allclose(to_mono_u8(frame, encoding), luma, atol=1.5)
    np.testing.assert_allclose(to_mono_float(frame, encoding), luma / 255, atol=1.5 / 255)
    fields = array_to_image_fields(frame, encoding)
    assert fields['step'] == 12 and bytes_per_pixel(encoding) == 2
    np.testing.assert_array_equal(
        image_to_array(encoding, 4, 6, 12, 0, bytes(fields['data'])), frame)


@pytest.mark.parametrize('encoding', ['uyvy', 'yuv422_yuy2'])
def test_yuv422_of_odd_width_is_rejected(encoding):
    with pytest.raises(ImageRejected, match='width 5 is odd') as info:
        image_to_array(encoding, 2, 5, 10, 0, bytes(20))
    assert info.value.reason == 'odd_width'
    with pytest.raises(ValueError, match='even width'):
        to_rgb_u8(np.zeros((2, 5, 2), np.uint8), encoding)


SIXTEEN_BIT_COLOUR = ('rgb16', 'bgr16', 'rgba16', 'bgra16')


def in_channel_order(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """An (H, W, 3) RGB array laid out as `encoding` (BGR swapped, an alpha channel added)."""
    out = rgb[..., ::-1] if encoding.startswith('bgr') else rgb
    if encoding.endswith('a16') or encoding.endswith('a8'):
        out = np.concatenate([out, np.full(rgb.shape[:2] + (1,), 12345, rgb.dtype)], axis=2)
    return np.ascontiguousarray(out)


@pytest.mark.parametrize('encoding', SIXTEEN_BIT_COLOUR)
@pytest.mark.parametrize('big_endian', [False, True])
def test_sixteen_bit_colour_converts_at_full_scale(encoding, big_endian):
    """16-bit colour is read over the whole 0..65535 range in either byte order: float paths keep
    the 16-bit precision, 8-bit paths keep the top byte, alpha is dropped, BGR swapped."""
    rgb = RNG.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    data, step = padded_bytes(in_channel_order(rgb, encoding), pad=2, big_endian=big_endian)
    frame = image_to_array(encoding, 5, 6, step, int(big_endian), data)
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(to_rgb_float(frame, encoding), rgb / 65535.0, atol=1e-6)
    np.testing.assert_allclose(to_mono_float(frame, encoding), luma / 65535.0, atol=1e-5)
    np.testing.assert_array_equal(to_rgb_u8(frame, encoding), rgb >> 8)
    np.testing.assert_allclose(to_mono_u8(frame, encoding), luma / 256.0, atol=1.01)
    channels = 4 if encoding.startswith(('rgba', 'bgra')) else 3
    assert full_scale(encoding) == 65535.0 and bytes_per_pixel(encoding) == 2 * channels


def test_dark_sixteen_bit_colour_is_not_lost_in_the_float_paths():
    """A dim 16-bit frame (every sample under 256, as an underexposed sensor gives) keeps its
    picture in the float conversions although its top byte is 0."""
    rgb = RNG.integers(0, 256, (4, 4, 3), dtype=np.uint16)
    assert not to_rgb_u8(rgb, 'rgb16').any()
    assert np.ptp(to_mono_float(rgb, 'rgb16')) > 50 / 65535.0


@pytest.mark.parametrize('encoding', sorted(BAYER_CELLS))
def test_sixteen_bit_bayer_patterns_demosaic_to_their_colours(encoding):
    """bayer_*16: the same patterns as the 8-bit names, demosaiced on the 16-bit samples."""
    encoding16 = encoding[:-1] + '16'
    colour = np.array([51200, 25700, 7690], np.uint16)
    raw = mosaic(np.broadcast_to(colour, (8, 10, 3)), encoding)
    data, step = padded_bytes(raw, pad=4, big_endian=True)
    raw = image_to_array(encoding16, 8, 10, step, 1, data)
    assert raw.dtype == np.dtype('>u2')
    np.testing.assert_allclose(to_rgb_float(raw, encoding16)[2:-2, 2:-2],
                               np.broadcast_to(colour / 65535.0, (4, 6, 3)), atol=1e-6)
    np.testing.assert_array_equal(to_rgb_u8(raw, encoding16)[2:-2, 2:-2],
                                  np.broadcast_to(colour >> 8, (4, 6, 3)))
    luma = float(colour @ np.array([0.299, 0.587, 0.114]))
    np.testing.assert_allclose(to_mono_float(raw, encoding16)[2:-2, 2:-2], luma / 65535.0,
                               atol=2e-5)
    np.testing.assert_allclose(to_mono_u8(raw, encoding16)[2:-2, 2:-2], luma / 256.0, atol=1.01)
