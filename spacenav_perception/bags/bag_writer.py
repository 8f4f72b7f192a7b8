"""Dataset folder -> rosbag2 bag (`spacenav bag make`), written with `rosbags` (no ROS needed).

The bag is what `ros2 bag record` on Jazzy would give for a camera with ground truth:
metadata.yaml version 9 (Jazzy), MCAP storage by default (SQLite3 on request), CDR messages with
the Jazzy type definitions and hashes (rosbags' ROS2_JAZZY typestore), so `ros2 bag info` /
`ros2 bag play` accept it.

Topics (every message of frame i has the header stamp t0 + i / rate_hz and `frame_id`; the
log time equals the header stamp):

    /camera/image_raw        sensor_msgs/msg/Image        mono8 (asteroid) | rgb8 (lunar)
    /camera/camera_info      sensor_msgs/msg/CameraInfo   pinhole K from the FOV, no distortion
    /centroid_truth          geometry_msgs/msg/PointStamped   asteroid: (x, y, 0) pixels
    /hazard_truth            sensor_msgs/msg/Image        lunar: mono8 255 = small/large rock
    /segmentation_truth      sensor_msgs/msg/Image        lunar: mono8 class ids 0..3

An asteroid frame whose label is empty / NaN (no target in view) has no /centroid_truth message.
With image_format 'png' or 'jpeg' the camera frames go instead to /camera/image_raw/compressed
as sensor_msgs/msg/CompressedImage (image_transport's compressed transport: format
"mono8; png compressed ", "rgb8; jpeg compressed bgr8", ...); the truth masks stay raw.

Crash safety: the bag is written into `<BAG>.partial/<name>/` and moved to `<BAG>` only after
the writer closed cleanly (metadata.yaml written, MCAP summary/footer or SQLite commit done).
A killed conversion leaves `<BAG>.partial` behind, never a `<BAG>` that looks complete; the
next run removes the stale `<BAG>.partial`.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spacenav_perception.bags import frame_sources as fs

STORAGES = ('mcap', 'sqlite3')
IMAGE_FORMATS = ('raw', 'png', 'jpeg')


@dataclass
class BagSummary:
    path: Path
    frames: int
    messages: int
    layout: str
    storage: str
    problems_summary: str


def partial_path(bag: Path) -> Path:
    bag = Path(bag)
    return bag.with_name(bag.name + '.partial')


def _qos_profiles(reliable: bool = True, depth: int = 10):
    """Offered QoS recorded in metadata (what `ros2 bag play` offers): reliable, volatile."""
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                    QosReliability, QosTime)
    return [Qos(QosHistory.KEEP_LAST, depth,
                QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
                QosDurability.VOLATILE, QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC,
                QosTime(0, 0), False)]


class _MessageFactory:
    """Builds rosbags message objects for a Frame and serialises them to CDR."""

    def __init__(self, typestore):
        self.ts = typestore
        t = typestore.types
        self.Header = t['std_msgs/msg/Header']
        self.Time = t['builtin_interfaces/msg/Time']
        self.Image = t['sensor_msgs/msg/Image']
        self.CompressedImage = t['sensor_msgs/msg/CompressedImage']
        self.CameraInfo = t['sensor_msgs/msg/CameraInfo']
        self.RegionOfInterest = t['sensor_msgs/msg/RegionOfInterest']
        self.PointStamped = t['geometry_msgs/msg/PointStamped']
        self.Point = t['geometry_msgs/msg/Point']

    def header(self, frame: fs.Frame):
        sec, nanosec = frame.stamp
        return self.Header(stamp=self.Time(sec=sec, nanosec=nanosec), frame_id=frame.frame_id)

    def image(self, frame: fs.Frame, array: np.ndarray, encoding: str) -> bytes:
        from spacenav_perception.core.image_codec import array_to_image_fields
        f = array_to_image_fields(array, encoding)
        msg = self.Image(header=self.header(frame), height=f['height'], width=f['width'],
                         encoding=f['encoding'], is_bigendian=f['is_bigendian'], step=f['step'],
                         data=np.frombuffer(f['data'], dtype=np.uint8))
        return self.ts.serialize_cdr(msg, 'sensor_msgs/msg/Image')

    def compressed_image(self, frame: fs.Frame, array: np.ndarray, encoding: str,
                         codec: str) -> bytes:
        from spacenav_perception.core.compressed_image import encode_compressed
        fmt, payload = encode_compressed(array, encoding, codec)
        msg = self.CompressedImage(header=self.header(frame), format=fmt,
                                   data=np.frombuffer(payload, dtype=np.uint8))
        return self.ts.serialize_cdr(msg, fs.COMPRESSED_IMAGE_TYPE)

    def camera_info(self, frame: fs.Frame) -> bytes:
        c = frame.camera.camera_info_fields()
        msg = self.CameraInfo(
            header=self.header(frame), height=c['height'], width=c['width'],
            distortion_model=c['distortion_model'], d=np.array(c['d'], dtype=np.float64),
            k=np.array(c['k'], dtype=np.float64), r=np.array(c['r'], dtype=np.float64),
            p=np.array(c['p'], dtype=np.float64), binning_x=0, binning_y=0,
            roi=self.RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0,
                                      do_rectify=False))
        return self.ts.serialize_cdr(msg, 'sensor_msgs/msg/CameraInfo')

    def centroid(self, frame: fs.Frame) -> bytes:
        x, y = frame.centroid
        msg = self.PointStamped(header=self.header(frame),
                                point=self.Point(x=float(x), y=float(y), z=0.0))
        return self.ts.serialize_cdr(msg, 'geometry_msgs/msg/PointStamped')


def make_bag(data_dir, out_bag, *, storage='mcap', rate_hz=fs.DEFAULT_RATE_HZ,
             frame_id=fs.DEFAULT_FRAME_ID, fov_deg=None, masks='clean', strict=False,
             t0_ns=None, start_index=0, end_index=-1, problems=None, progress=True,
             overwrite=False, log=print, image_format='raw') -> BagSummary:
    """Convert a dataset folder (asteroid or lunar layout) into a rosbag2 bag at `out_bag`.

    Images are read, converted and written one at a time. Raises FileExistsError when
    `out_bag` exists (unless overwrite), ValueError on bad arguments, and the DataProblems
    error in strict mode. Returns a BagSummary.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from tqdm import tqdm

    data_dir, out_bag = Path(data_dir), Path(out_bag)
    if storage not in STORAGES:
        raise ValueError(f'storage must be one of {STORAGES}, not {storage!r}')
    if not rate_hz > 0:
        raise ValueError(f'rate_hz must be > 0, not {rate_hz}')
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f'image_format must be one of {IMAGE_FORMATS}, not {image_format!r}')
    layout = fs.detect_layout(data_dir)
    if layout == 'bag':
        raise ValueError(f'{data_dir} is already a bag; give a dataset folder')
    if out_bag.exists():
        if not overwrite:
            raise FileExistsError(f'{out_bag} exists already; remove it or choose another --out')
        shutil.rmtree(out_bag)
    problems = fs.make_problems(strict, problems)
    if t0_ns is None:
        t0_ns = int(time.time()) * 1_000_000_000
    stage_root = partial_path(out_bag)
    if stage_root.exists():
        shutil.rmtree(stage_root)        # left over from a killed conversion
    stage_root.mkdir(parents=True)
    stage = stage_root / out_bag.name     # the storage file is named after the bag directory

    reader_kwargs = dict(rate_hz=rate_hz, t0_ns=t0_ns, fov_deg=fov_deg, frame_id=frame_id)
    if layout == 'asteroid':
        frames = fs.iter_asteroid_frames(data_dir, start_index=start_index, end_index=end_index,
                                         problems=problems, **reader_kwargs)
    else:
        frames = fs.iter_lunar_frames(data_dir, start_index=start_index, end_index=end_index,
                                      problems=problems, masks=masks, **reader_kwargs)
    total = fs.count_dataset_frames(data_dir, masks)
    if end_index >= 0:
        total = min(total, end_index + 1)
    total = max(0, total - start_index)

    typestore = fs.jazzy_typestore()
    factory = _MessageFactory(typestore)
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    writer = Writer(stage, version=9, storage_plugin=plugin)
    writer.set_custom_data('spacenav.source', str(data_dir.resolve()))
    writer.set_custom_data('spacenav.layout', layout)
    writer.set_custom_data('spacenav.rate_hz', repr(float(rate_hz)))
    n_frames = n_messages = 0
    closed = False
    writer.open()
    try:
        qos = _qos_profiles()
        kw = dict(typestore=typestore, offered_qos_profiles=qos)
        if image_format == 'raw':
            c_image = writer.add_connection(fs.IMAGE_TOPIC, fs.IMAGE_TYPE, **kw)
        else:
            c_image = writer.add_connection(fs.IMAGE_TOPIC + fs.COMPRESSED_SUFFIX,
                                            fs.COMPRESSED_IMAGE_TYPE, **kw)
        c_info = writer.add_connection(fs.CAMERA_INFO_TOPIC, fs.CAMERA_INFO_TYPE, **kw)
        if layout == 'asteroid':
            c_centroid = writer.add_connection(fs.CENTROID_TRUTH_TOPIC, fs.POINT_TYPE, **kw)
        else:
            c_hazard = writer.add_connection(fs.HAZARD_TRUTH_TOPIC, fs.IMAGE_TYPE, **kw)
            c_seg = writer.add_connection(fs.SEGMENTATION_TRUTH_TOPIC, fs.IMAGE_TYPE, **kw)
        bar = tqdm(total=total, unit='frame', desc=f'bag {out_bag.name}', disable=not progress)
        with bar:
            for frame in frames:
                t = frame.stamp_ns
                if image_format == 'raw':
                    image = factory.image(frame, frame.image, frame.encoding)
                else:
                    image = factory.compressed_image(frame, frame.image, frame.encoding,
                                                     image_format)
                writer.write(c_image, t, image)
                writer.write(c_info, t, factory.camera_info(frame))
                n_messages += 2
                if layout == 'asteroid':
                    if frame.centroid is not None:
                        writer.write(c_centroid, t, factory.centroid(frame))
                        n_messages += 1
                else:
                    writer.write(c_hazard, t, factory.image(frame, frame.hazard, 'mono8'))
                    writer.write(c_seg, t, factory.image(frame, frame.segmentation, 'mono8'))
                    n_messages += 2
                n_frames += 1
                bar.update(1)
        writer.close()
        closed = True
    finally:
        if not closed:
            try:
                writer.abort()
            finally:
                shutil.rmtree(stage_root, ignore_errors=True)
    if n_frames == 0:
        shutil.rmtree(stage_root, ignore_errors=True)
        raise ValueError(f'no usable frames in {data_dir}: {problems.summary()}')
    _fsync_tree(stage)
    os.replace(stage, out_bag)          # atomic on one file system: BAG appears complete
    shutil.rmtree(stage_root, ignore_errors=True)
    summary = problems.summary() if problems else ''
    return BagSummary(out_bag, n_frames, n_messages, layout, storage, summary)


def _fsync_tree(directory: Path) -> None:
    """Flush the bag's files to disk before the rename publishes them."""
    for path in directory.iterdir():
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
