"""Frames (image + camera model + ground truth + stamp) from a rosbag2 bag or a dataset folder.

ROS-free: bags are read with `rosbags` (MCAP or SQLite3, a bag directory or a bare .mcap/.db3
file), dataset folders with OpenCV. One frame at a time is held in memory.

    for frame in open_frames('demo_out/bags/asteroid', start_index=0, end_index=-1):
        frame.image, frame.encoding, frame.stamp_ns, frame.camera, frame.centroid, ...

Layouts (see DEVELOPERS.md, "Datasets"):
  asteroid  DIR/labels.csv + DIR/images/*.png           -> mono8 image, centroid truth
  lunar     DIR/images/render/renderNNNN.png + masks     -> rgb8 image, hazard + class truth
  bag       DIR/metadata.yaml (+ .mcap / .db3), or a bare .mcap / .db3 file; camera frames
            as sensor_msgs/Image or sensor_msgs/CompressedImage (PNG or JPEG, decoded by
            core/compressed_image.py), on image_topic or, when the bag only has that,
            image_topic/compressed (as image_transport's compressed transport records them)

Problems (missing image, malformed CSV row, unreadable PNG, unknown mask colour, a truncated or
corrupt bag) go through `data/problems.py`: skipped and summarised by default, raised at the
first one with strict=True. A damaged bag yields the frames read before the damage and records
one problem saying where it stopped.

Camera model: asteroid frames default to a horizontal field of view of `ASTEROID_FOV_DEG`
(5.5 deg, over the image width), lunar frames to `LUNAR_FOV_DEG`; a per-image FOV column in
the dataset's meta.csv (`fov_deg`, `hfov_deg` or `fov`) wins over the default, an explicit
`fov_deg` argument wins over both. fx = fy = (W / 2) / tan(fov / 2), cx = (W - 1) / 2,
cy = (H - 1) / 2 (centre of the top-left pixel = (0, 0), as ROS CameraInfo).
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..core.lunar_classes import HAZARD_CLASSES

ASTEROID_FOV_DEG = 5.5
LUNAR_FOV_DEG = 60.0
DEFAULT_RATE_HZ = 10.0

IMAGE_TOPIC = '/camera/image_raw'
CAMERA_INFO_TOPIC = '/camera/camera_info'
CENTROID_TRUTH_TOPIC = '/centroid_truth'
HAZARD_TRUTH_TOPIC = '/hazard_truth'
SEGMENTATION_TRUTH_TOPIC = '/segmentation_truth'
DEFAULT_FRAME_ID = 'camera_optical_frame'

FOV_COLUMNS = ('fov_deg', 'hfov_deg', 'fov')

IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE_TYPE = 'sensor_msgs/msg/CompressedImage'
COMPRESSED_SUFFIX = '/compressed'     # image_transport's topic for the compressed transport
CAMERA_INFO_TYPE = 'sensor_msgs/msg/CameraInfo'
POINT_TYPE = 'geometry_msgs/msg/PointStamped'


@dataclass(frozen=True)
class CameraModel:
    """Pinhole camera without distortion, in the project pixel convention."""
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fov(cls, width: int, height: int, fov_deg: float) -> 'CameraModel':
        if not 0.0 < fov_deg < 180.0:
            raise ValueError(f'field of view {fov_deg} deg is not in (0, 180)')
        f = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
        return cls(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0)

    @property
    def k(self) -> list:
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]

    @property
    def p(self) -> list:
        return [self.fx, 0.0, self.cx, 0.0, 0.0, self.fy, self.cy, 0.0, 0.0, 0.0, 1.0, 0.0]

    def camera_info_fields(self) -> dict:
        """sensor_msgs/CameraInfo fields (less the header)."""
        return {'height': self.height, 'width': self.width, 'distortion_model': 'plumb_bob',
                'd': [0.0] * 5, 'k': self.k, 'r': [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                'p': self.p, 'binning_x': 0, 'binning_y': 0}


@dataclass
class Frame:
    """One camera frame with its truth. Arrays are owned by the frame (or read-only views)."""
    index: int                      # position in the source (0-based, after skipped problems)
    stamp_ns: int                   # header stamp shared by every message of the frame
    name: str                       # image file name, or 'frame_NNNNNN' for bags
    image: np.ndarray               # (H, W) uint8 for mono8, (H, W, 3) uint8 RGB for rgb8
    encoding: str                   # 'mono8' | 'rgb8' (bags: whatever was recorded)
    camera: CameraModel | None = None
    centroid: tuple | None = None   # (x, y) full-resolution pixels; None: no centroid truth
    hazard: np.ndarray | None = None         # uint8 (H, W), 0 / 255
    segmentation: np.ndarray | None = None   # uint8 (H, W) class ids
    frame_id: str = DEFAULT_FRAME_ID
    extra: dict = field(default_factory=dict)

    @property
    def stamp(self) -> tuple:
        """(sec, nanosec) of stamp_ns."""
        return divmod(int(self.stamp_ns), 1_000_000_000)


class SourceError(RuntimeError):
    """A source that cannot be opened at all (unknown layout, unreadable bag)."""


# --------------------------------------------------------------------------- problems

def make_problems(strict: bool = False, problems=None):
    """The shared DataProblems collector (data/problems.py)."""
    if problems is not None:
        return problems
    from spacenav_perception.data.problems import DataProblems
    return DataProblems(strict=strict)


def _record(problems, kind: str, item, detail: str) -> None:
    problems.record(kind, str(item), detail)


# --------------------------------------------------------------------------- layout

def detect_layout(path) -> str:
    """'bag' | 'asteroid' | 'lunar' for a path; SourceError when none fits."""
    path = Path(path)
    if path.is_file() and path.suffix in ('.mcap', '.db3'):
        return 'bag'
    if not path.is_dir():
        raise SourceError(f'{path} does not exist (expected a bag directory, a .mcap/.db3 file '
                          f'or a dataset folder)')
    if (path / 'metadata.yaml').is_file():
        return 'bag'
    if (path / 'labels.csv').is_file():
        return 'asteroid'
    if (path / 'images' / 'render').is_dir():
        return 'lunar'
    if list(path.glob('*.mcap')) or list(path.glob('*.db3')):
        return 'bag'   # a bag directory without metadata.yaml: reported as incomplete on open
    raise SourceError(
        f'{path} is neither a rosbag2 bag (metadata.yaml), an asteroid dataset (labels.csv + '
        f'images/) nor a lunar dataset (images/render/)')


def open_frames(path, *, start_index: int = 0, end_index: int = -1, problems=None,
                strict: bool = False, **kwargs) -> Iterator[Frame]:
    """Frames from a bag or a dataset folder (layout detected). kwargs go to the reader."""
    layout = detect_layout(path)
    problems = make_problems(strict, problems)
    if layout == 'bag':
        reader = iter_bag_frames
        kwargs = {k: v for k, v in kwargs.items() if k in _BAG_KWARGS}
    elif layout == 'asteroid':
        reader = iter_asteroid_frames
        kwargs = {k: v for k, v in kwargs.items() if k in _DATASET_KWARGS}
    else:
        reader = iter_lunar_frames
        kwargs = {k: v for k, v in kwargs.items() if k in _DATASET_KWARGS + ('masks',)}
    return reader(path, start_index=start_index, end_index=end_index, problems=problems,
                  **kwargs)


def _in_range(index: int, start_index: int, end_index: int) -> bool:
    return index >= start_index and (end_index < 0 or index <= end_index)


def _past_end(index: int, end_index: int) -> bool:
    return end_index >= 0 and index > end_index


# --------------------------------------------------------------------------- datasets

_DATASET_KWARGS = ('rate_hz', 't0_ns', 'fov_deg', 'frame_id')


def _read_meta(directory: Path, problems) -> dict:
    """meta.csv rows keyed by image name (empty when the file is absent)."""
    meta_path = directory / 'meta.csv'
    if not meta_path.is_file():
        return {}
    rows = {}
    try:
        with meta_path.open(newline='') as fh:
            for row in csv.DictReader(fh):
                name = row.get('image_name') or row.get('name') or row.get('image')
                if name:
                    rows[name] = row
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        _record(problems, 'bad_meta', meta_path, f'meta.csv cannot be read ({exc}); '
                'using the default field of view')
    return rows


def _fov_for(name: str, meta: dict, fov_deg, default: float) -> float:
    if fov_deg is not None:
        return float(fov_deg)
    row = meta.get(name)
    if row:
        for column in FOV_COLUMNS:
            try:
                value = float(row.get(column, ''))
            except (TypeError, ValueError):
                continue
            if 0.0 < value < 180.0:
                return value
    return default


def _stamp(t0_ns: int, i: int, rate_hz: float) -> int:
    return int(t0_ns) + int(round(i * 1e9 / rate_hz))


def _read_png(path: Path, flags: int, problems, what: str, missing_kind='missing_image'):
    if not path.is_file():
        _record(problems, missing_kind, path, f'{what} file is missing')
        return None
    image = cv2.imread(str(path), flags)
    if image is None or image.size == 0:
        _record(problems, 'unreadable_image', path, f'{what} cannot be decoded as an image')
        return None
    return image


def iter_asteroid_frames(directory, *, start_index=0, end_index=-1, problems=None,
                         strict=False, rate_hz=DEFAULT_RATE_HZ, t0_ns=0, fov_deg=None,
                         frame_id=DEFAULT_FRAME_ID) -> Iterator[Frame]:
    """Asteroid dataset (labels.csv + images/) -> mono8 (mono16 for 16-bit PNGs) frames with
    centroid truth. Rows are checked by the project's loader (data/asteroid_dataset.read_index:
    malformed or non-finite rows, missing or unreadable PNGs, labels outside the image are
    problems); frame i is the i-th good row."""
    from spacenav_perception.data.asteroid_dataset import read_image, read_index
    directory = Path(directory)
    problems = make_problems(strict, problems)
    records, _ = read_index(directory, problems=problems)     # also reads meta.csv
    for index, record in enumerate(records):
        if _past_end(index, end_index):
            return
        if not _in_range(index, start_index, end_index):
            continue
        image = read_image(record.path, problems)
        if image is None:
            continue
        encoding = 'mono16' if image.dtype == np.uint16 else 'mono8'
        if image.dtype not in (np.uint8, np.uint16):
            _record(problems, 'unreadable_image', record.path,
                    f'unsupported sample type {image.dtype}')
            continue
        h, w = image.shape[:2]
        yield Frame(index=index, stamp_ns=_stamp(t0_ns, index, rate_hz), name=record.name,
                    image=np.ascontiguousarray(image), encoding=encoding,
                    camera=CameraModel.from_fov(w, h, _fov_for(record.name,
                                                               {record.name: record.meta},
                                                               fov_deg, ASTEROID_FOV_DEG)),
                    centroid=(record.x, record.y), frame_id=frame_id)


def lunar_samples(directory, masks='clean', problems=None) -> list:
    """(image, mask) pairs of a lunar dataset through the project loader (find_samples)."""
    from spacenav_perception.data.lunar_dataset import find_samples
    return find_samples(directory, masks=masks, sources=('render',),
                        problems=problems if problems is not None else make_problems(False))


def iter_lunar_frames(directory, *, start_index=0, end_index=-1, problems=None, strict=False,
                      masks='clean', rate_hz=DEFAULT_RATE_HZ, t0_ns=0, fov_deg=None,
                      frame_id=DEFAULT_FRAME_ID) -> Iterator[Frame]:
    """Lunar dataset (Kaggle layout) -> rgb8 frames with hazard and class-id truth.

    Pairs, decoding and mask classification are the project loader's (data/lunar_dataset.py:
    find_samples, read_rgb, classify_mask by dominant channel); unknown mask colours are
    reported ('unknown_mask_colour') and labelled ground, as in training."""
    from spacenav_perception.data.lunar_dataset import classify_mask, read_rgb
    directory = Path(directory)
    problems = make_problems(strict, problems)
    meta = _read_meta(directory, problems)
    for index, sample in enumerate(lunar_samples(directory, masks, problems)):
        if _past_end(index, end_index):
            return
        if not _in_range(index, start_index, end_index):
            continue
        image = read_rgb(sample.image)
        if image is None:
            _record(problems, 'unreadable_image', sample.image, 'render cannot be decoded')
            continue
        mask = read_rgb(sample.mask)
        if mask is None:
            _record(problems, 'unreadable_image', sample.mask, f'{masks} mask cannot be decoded')
            continue
        if mask.shape[:2] != image.shape[:2]:
            _record(problems, 'bad_image_size', sample.mask,
                    f'mask is {mask.shape[1]}x{mask.shape[0]} but the render is '
                    f'{image.shape[1]}x{image.shape[0]}')
            continue
        classes, unknown = classify_mask(mask)
        if unknown.any():
            _record(problems, 'unknown_mask_colour', sample.mask,
                    f'{int(unknown.sum())} pixels of no class colour, labelled ground')
        classes = np.ascontiguousarray(classes, dtype=np.uint8)
        hazard = np.where(np.isin(classes, HAZARD_CLASSES), 255, 0).astype(np.uint8)
        h, w = image.shape[:2]
        yield Frame(index=index, stamp_ns=_stamp(t0_ns, index, rate_hz), name=sample.name,
                    image=image, encoding='rgb8',
                    camera=CameraModel.from_fov(w, h, _fov_for(sample.name, meta, fov_deg,
                                                               LUNAR_FOV_DEG)),
                    hazard=hazard, segmentation=classes, frame_id=frame_id)


def count_dataset_frames(directory, masks='clean') -> int:
    """Number of frames a dataset lists (before problems are removed): for progress bars."""
    layout = detect_layout(directory)
    if layout == 'asteroid':
        with (Path(directory) / 'labels.csv').open(newline='') as fh:
            return max(0, sum(1 for line in fh if line.strip()) - 1)   # good rows: at most
    if layout == 'lunar':
        return len(lunar_samples(directory, masks))
    raise SourceError(f'{directory} is a bag, not a dataset folder')


# --------------------------------------------------------------------------- bags

_BAG_KWARGS = ('image_topic', 'camera_info_topic', 'centroid_truth_topic', 'hazard_truth_topic',
               'segmentation_truth_topic')


def jazzy_typestore():
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_JAZZY)


def _stamp_ns_of(msg) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def bag_image_topic(topics, image_topic=IMAGE_TOPIC) -> str:
    """The topic to read camera frames from: `image_topic`, or when the bag lacks it and holds
    `image_topic`/compressed (a camera recorded through image_transport's compressed
    transport), that one."""
    topics = set(topics)
    compressed = image_topic.rstrip('/') + COMPRESSED_SUFFIX
    if image_topic not in topics and compressed in topics:
        return compressed
    return image_topic


def bag_frame_count(path, image_topic=IMAGE_TOPIC) -> int | None:
    """Number of image messages the bag's metadata promises (None when unknown)."""
    from rosbags.rosbag2 import Reader
    try:
        with Reader(path) as reader:
            topic = bag_image_topic((c.topic for c in reader.connections), image_topic)
            return sum(c.msgcount for c in reader.connections if c.topic == topic)
    except Exception:   # noqa: BLE001 - the frame iterator reports the real problem
        return None


def bag_topics(path) -> set:
    """Topic names in a bag (empty when it cannot be opened; the frame iterator says why)."""
    from rosbags.rosbag2 import Reader
    try:
        with Reader(path) as reader:
            return {c.topic for c in reader.connections}
    except Exception:   # noqa: BLE001
        return set()


def _image_from_msg(msg):
    """(array, encoding) of an Image or a CompressedImage (PNG/JPEG) message; ValueError
    (core.image_codec.ImageRejected) when it cannot be decoded."""
    if hasattr(msg, 'format') and not hasattr(msg, 'encoding'):     # CompressedImage
        from spacenav_perception.core.compressed_image import decode_compressed
        return decode_compressed(msg.format, msg.data)
    from spacenav_perception.core.image_codec import image_to_array
    array = image_to_array(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian,
                           msg.data)
    return array, msg.encoding


def _camera_from_msg(msg) -> CameraModel:
    k = [float(v) for v in msg.k]
    return CameraModel(int(msg.width), int(msg.height), k[0], k[4], k[2], k[5])


def iter_bag_frames(path, *, start_index=0, end_index=-1, problems=None, strict=False,
                    image_topic=IMAGE_TOPIC, camera_info_topic=CAMERA_INFO_TOPIC,
                    centroid_truth_topic=CENTROID_TRUTH_TOPIC,
                    hazard_truth_topic=HAZARD_TRUTH_TOPIC,
                    segmentation_truth_topic=SEGMENTATION_TRUTH_TOPIC) -> Iterator[Frame]:
    """Frames of a rosbag2 bag: messages grouped by header stamp, one frame per image.

    Messages of one frame share a header stamp; they are assembled while reading in log-time
    order (a few frames may be open at once). Frames are read from `image_topic`, or from
    `image_topic`/compressed when only that is recorded (`bag_image_topic`). A frame without
    an image (truth only) is recorded as a problem. A bag that cannot be opened, or that breaks off while reading,
    is recorded as one problem ('bad_bag') and iteration stops there.
    """
    from rosbags.rosbag2 import Reader
    path = Path(path)
    problems = make_problems(strict, problems)
    typestore = jazzy_typestore()
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # noqa: BLE001 - ReaderError, YAML, sqlite, mcap errors alike
        hint = ''
        if path.is_dir() and not (path / 'metadata.yaml').is_file():
            hint = ' (no metadata.yaml: the bag is incomplete, e.g. an interrupted conversion)'
        _record(problems, 'bad_bag', path, f'bag cannot be opened: {exc}{hint}')
        return
    image_topic = bag_image_topic((c.topic for c in reader.connections), image_topic)
    topics = {image_topic: 'image', camera_info_topic: 'camera',
              centroid_truth_topic: 'centroid', hazard_truth_topic: 'hazard',
              segmentation_truth_topic: 'segmentation'}
    state = {'index': 0}
    pending: dict[int, dict] = {}     # stamp_ns -> parts, insertion ordered

    def finish(stamp_ns, parts):
        if 'image' not in parts:
            _record(problems, 'missing_image', f'{path}@{stamp_ns}',
                    f'truth/camera_info at stamp {stamp_ns} ns has no image message')
            return None
        index = state['index']
        state['index'] += 1
        if not _in_range(index, start_index, end_index):
            return None
        img_msg = parts['image']
        try:
            image, encoding = _image_from_msg(img_msg)
        except ValueError as exc:
            _record(problems, 'bad_image', f'{path}@{stamp_ns}', str(exc))
            return None
        frame = Frame(index=index, stamp_ns=stamp_ns, name=f'frame_{index:06d}', image=image,
                      encoding=encoding, frame_id=img_msg.header.frame_id)
        if 'camera' in parts:
            frame.camera = _camera_from_msg(parts['camera'])
        if 'centroid' in parts:
            p = parts['centroid'].point
            frame.centroid = (float(p.x), float(p.y))
        for key in ('hazard', 'segmentation'):
            if key in parts:
                try:
                    setattr(frame, key, _image_from_msg(parts[key])[0])
                except ValueError as exc:
                    _record(problems, 'bad_image', f'{path}@{stamp_ns}:{key}', str(exc))
        return frame

    try:
        connections = [c for c in reader.connections if c.topic in topics]
        if not any(c.topic == image_topic for c in connections):
            _record(problems, 'bad_bag', path, f'bag has no {image_topic} topic; topics: '
                    f'{sorted({c.topic for c in reader.connections})}')
            return
        messages = reader.messages(connections=connections)
        while True:
            try:
                connection, _, raw = next(messages)
                msg = typestore.deserialize_cdr(raw, connection.msgtype)
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001 - truncated chunk, bad CDR, ...
                _record(problems, 'truncated_bag', path,
                        f'bag is damaged after {state["index"]} frames: {exc}')
                break
            stamp_ns = _stamp_ns_of(msg)
            role = topics[connection.topic]
            parts = pending.setdefault(stamp_ns, {})
            if role in parts:
                _record(problems, 'duplicate', f'{path}@{stamp_ns}',
                        f'second {connection.topic} message for stamp {stamp_ns}; ignored')
                continue
            parts[role] = msg
            # A new image closes frames that are more than a few images old.
            if role == 'image':
                while len(pending) > 4:
                    old_stamp = next(iter(pending))
                    frame = finish(old_stamp, pending.pop(old_stamp))
                    if frame is not None:
                        yield frame
                    if _past_end(state['index'], end_index):
                        return
        for stamp_ns in list(pending):
            frame = finish(stamp_ns, pending.pop(stamp_ns))
            if frame is not None:
                yield frame
            if _past_end(state['index'], end_index):
                return
    finally:
        try:
            reader.close()
        except Exception:  # noqa: BLE001
            pass
