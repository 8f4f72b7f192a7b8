"""sensor_msgs/Image <-> numpy through core.image_codec, without needless copies.

Incoming: rclpy hands `Image.data` as array.array('B'); core.image_codec.image_to_array views
it as numpy (row padding as strides, byte order as dtype) - no bytes are copied.

Outgoing: `make_image` takes the output array's buffer as the message data without any
Python-side copy. rclpy's Image.data setter would copy it into a new array.array (and, for a
memoryview or numpy array, element by element); the generated C converter that serialises
the message only needs an object with the buffer protocol (it does one memcpy, which is the
serialisation itself), so the buffer is stored in the message's `_data` slot directly. The
array must not change until publish() returns (publish is synchronous). Such a message is for
publishing: its `data` is a memoryview, not an array.array.
"""
import array as _array

import numpy as np
from sensor_msgs.msg import Image

from spacenav_perception.core import image_codec
from spacenav_perception.core.compressed_image import decode_compressed
from spacenav_perception.core.image_codec import ImageRejected  # noqa: F401  (re-export)

# Generated message classes keep field values in slots named '_' + field; the C converter
# reads the `data` property, which returns the slot.
_DIRECT_DATA = '_data' in getattr(Image, '__slots__', ())


def image_to_array(msg: Image, max_pixels: int) -> np.ndarray:
    """The image as a numpy view on msg.data ((H, W) or (H, W, C)); raises ImageRejected."""
    return image_codec.image_to_array(msg.encoding, msg.height, msg.width, msg.step,
                                      msg.is_bigendian, msg.data, max_pixels=max_pixels)


def decompress(msg, max_pixels: int):
    """(Image, array) of a sensor_msgs/CompressedImage (PNG or JPEG): the decoded pixels and
    an Image with the same header around them (no copy); raises ImageRejected."""
    array, encoding = decode_compressed(msg.format, msg.data, max_pixels=max_pixels)
    return make_image(msg.header, array, encoding), array


def set_data(msg: Image, data) -> None:
    """Give `msg` the bytes of `data` (a C-contiguous buffer) without a Python-side copy."""
    if _DIRECT_DATA:
        msg._data = data
    else:  # a message class without the slot layout: the regular (copying) setter
        msg.data = data if isinstance(data, _array.array) else image_codec.byte_array(data)


def make_image(header, array: np.ndarray, encoding: str) -> Image:
    """An Image message with `header` and the pixels of `array` (shape must fit `encoding`).

    No copy when `array` already is C-contiguous with the encoding's dtype (uint8 for 8-bit,
    uint16 for mono16, float32 for 32FC1), little endian.
    """
    fields = image_codec.array_to_image_fields(array, encoding)
    msg = Image()
    msg.header = header
    msg.height = fields['height']
    msg.width = fields['width']
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = fields['step']
    set_data(msg, fields['data'])
    return msg


def image_from_array(array: np.ndarray, encoding: str, *, stamp=None, frame_id: str = '',
                     step: int = None, is_bigendian: bool = False) -> Image:
    """A regular (array.array data) Image from an array: for tests, demos and replay.

    `step` > the packed row size pads every row; `is_bigendian` stores multi-byte samples big
    endian. Copies (these are producer-side conveniences, not the per-frame node path).
    """
    fields = image_codec.array_to_image_fields(np.asarray(array), encoding)
    height, row = fields['height'], fields['step']
    step = row if step is None else int(step)
    if step < row:
        raise ValueError(f'step {step} is smaller than a row ({row} bytes)')
    packed = np.frombuffer(fields['data'], dtype=np.uint8).reshape(height, row)
    sample = image_codec.bytes_per_pixel(encoding) // image_codec.channels_of(encoding)
    if is_bigendian and sample > 1:
        packed = packed.reshape(height, -1, sample)[:, :, ::-1].reshape(height, row)
    rows = np.zeros((height, step), dtype=np.uint8)
    rows[:, :row] = packed
    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height = fields['height']
    msg.width = fields['width']
    msg.encoding = encoding
    msg.is_bigendian = 1 if is_bigendian else 0
    msg.step = step
    msg.data = image_codec.byte_array(rows)
    return msg
