"""`spacenav bag make`: dataset folder -> rosbag2 bag; `spacenav bag info`: what a bag holds."""
from __future__ import annotations

import argparse
import sys

from spacenav_perception.commands import HelpFormatter


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'bag', help='make rosbag2 bags from datasets, show what a bag holds',
        description='Convert datasets into rosbag2 bags (no ROS install needed) and inspect bags.')
    sub = parser.add_subparsers(dest='bag_command', metavar='BAG_COMMAND')

    make = sub.add_parser(
        'make', help='convert a dataset folder into a rosbag2 bag',
        formatter_class=HelpFormatter,
        description='Convert an asteroid dataset (labels.csv + images/) or a lunar dataset '
                    '(images/render + images/clean|ground masks) into a rosbag2 bag that '
                    '`ros2 bag info/play` accept (metadata version 9, Jazzy message types). '
                    'Topics: /camera/image_raw (mono8 asteroid, rgb8 lunar), /camera/camera_info, '
                    'and truth: /centroid_truth (geometry_msgs/PointStamped, asteroid) or '
                    '/hazard_truth (mono8 0/255) + /segmentation_truth (mono8 class ids, lunar). '
                    'All messages of frame i share the header stamp t0 + i / rate. The bag is '
                    'written into BAG.partial and renamed to BAG only once complete.')
    make.add_argument('--data', required=True, help='dataset folder (asteroid or lunar layout)')
    make.add_argument('--out', required=True, help='bag directory to create (must not exist)')
    make.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap',
                      help='rosbag2 storage plugin (Jazzy default: mcap)')
    make.add_argument('--rate-hz', type=float, default=10.0,
                      help='frame rate of the recorded timeline (stamp spacing)')
    make.add_argument('--image-format', choices=('raw', 'png', 'jpeg'), default='raw',
                      help='camera frames as sensor_msgs/Image on /camera/image_raw (raw), or '
                           'as sensor_msgs/CompressedImage on /camera/image_raw/compressed '
                           '(png: lossless, jpeg: quality 95, lossy); replay_node and the '
                           'readers decode either')
    make.add_argument('--frame-id', default='camera_optical_frame', help='header frame_id')
    make.add_argument('--fov-deg', type=float, default=None,
                      help='horizontal field of view for CameraInfo; default: meta.csv '
                           'fov_deg when present, else 5.5 (asteroid) / 60 (lunar)')
    make.add_argument('--masks', choices=('clean', 'ground'), default='clean',
                      help='lunar: which mask folder is the truth')
    make.add_argument('--t0-sec', type=float, default=None,
                      help='stamp of the first frame in seconds since the epoch (default: now)')
    make.add_argument('--start-index', type=int, default=0, help='first frame to convert')
    make.add_argument('--end-index', type=int, default=-1, help='last frame (-1: to the end)')
    make.add_argument('--overwrite', action='store_true', help='replace an existing bag')
    make.add_argument('--strict', action='store_true',
                      help='stop at the first data problem (default: skip, summarise at the end)')
    make.add_argument('--no-progress', action='store_true', help='no progress bar')
    make.set_defaults(func=run_make)

    info = sub.add_parser('info', help='topics, counts, duration of a bag (like ros2 bag info)')
    info.add_argument('bag', help='bag directory, .mcap or .db3 file')
    info.set_defaults(func=run_info)

    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def run_make(args) -> int:
    from spacenav_perception.bags.bag_writer import make_bag
    from spacenav_perception.bags.frame_sources import SourceError
    from spacenav_perception.data.problems import DataError
    t0_ns = None if args.t0_sec is None else int(round(args.t0_sec * 1e9))
    try:
        summary = make_bag(args.data, args.out, storage=args.storage, rate_hz=args.rate_hz,
                           frame_id=args.frame_id, fov_deg=args.fov_deg, masks=args.masks,
                           strict=args.strict, t0_ns=t0_ns, start_index=args.start_index,
                           end_index=args.end_index, overwrite=args.overwrite,
                           progress=not args.no_progress, image_format=args.image_format)
    except DataError as exc:
        print(f'spacenav bag make: stopped at the first data problem (--strict): {exc}',
              file=sys.stderr)
        return 1
    except (SourceError, FileExistsError, ValueError) as exc:
        print(f'spacenav bag make: error: {exc}', file=sys.stderr)
        return 1
    print(f'wrote {summary.path} ({summary.storage}, {summary.layout}): {summary.frames} frames, '
          f'{summary.messages} messages')
    if summary.problems_summary:
        print(summary.problems_summary)
    return 0


def run_info(args) -> int:
    from rosbags.rosbag2 import Reader
    try:
        with Reader(args.bag) as reader:
            print(f'bag:        {args.bag}')
            print(f'duration:   {reader.duration / 1e9:.3f} s')
            print(f'start:      {reader.start_time / 1e9:.9f}')
            print(f'messages:   {reader.message_count}')
            for topic, info in sorted(reader.topics.items()):
                print(f'  {topic:28s} {info.msgtype:34s} {info.msgcount}')
    except Exception as exc:  # noqa: BLE001
        print(f'spacenav bag info: {args.bag} cannot be read: {exc}', file=sys.stderr)
        return 1
    return 0
