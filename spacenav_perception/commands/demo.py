"""`spacenav demo`: synthetic data -> bags -> nodes -> live evaluation, in one process."""
import argparse
import sys

from spacenav_perception.commands import HelpFormatter


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'demo', help='render small data sets, replay them through the nodes, print the figures',
        formatter_class=HelpFormatter,
        description='Render a small asteroid and a small lunar data set, convert them into MCAP '
                    'bags, replay them through centroid_node / hazard_node with eval_node (the '
                    'graph of config/replay.yaml, in this process, with the shipped models), '
                    'then print a table (frames, centroid error, hazard IoU, answers per second, '
                    'latency) and write pictures into OUT: centroid_contact_sheet.png, '
                    'hazard_overlays.png, centroid_error_hist.png. Rendered data is reused on '
                    'the next run when the sizes match. CPU only is fine.')
    parser.add_argument('--n-asteroid', type=int, default=12, help='asteroid frames (0: skip)')
    parser.add_argument('--n-lunar', type=int, default=8, help='lunar frames (0: skip)')
    parser.add_argument('--out', default='demo_out', help='output folder')
    parser.add_argument('--quick', action='store_true',
                        help='fewer, smaller frames (at most 6 asteroid 256 px, 3 lunar 240x160)')
    parser.add_argument('--asteroid-size', type=int, default=1024,
                        help='asteroid image size in pixels (square)')
    parser.add_argument('--lunar-size', default='720x480', help='lunar image WIDTHxHEIGHT')
    parser.add_argument('--rate-hz', type=float, default=4.0,
                        help='replay rate of the asteroid frames; frames a node cannot keep up '
                             'with are dropped by it and count as missed')
    parser.add_argument('--lunar-rate-hz', type=float, default=2.0,
                        help='replay rate of the lunar frames (hazard_node needs 100-250 ms a '
                             '720x480 frame on two CPU cores; --quick raises it to 4)')
    parser.add_argument('--queue-depth', type=int, default=1,
                        help='image queue depth of the perception nodes (keep last, reliable): '
                             '1 answers the newest frame and drops the rest, as on a robot; '
                             'larger scores every frame of a replay a busy CPU falls behind on')
    parser.add_argument('--seed', type=int, default=2024, help='data set seed')
    parser.add_argument('--model-centroid', default='',
                        help="centroid model ('' = the shipped models/centroid.ts)")
    parser.add_argument('--model-hazard', default='',
                        help="hazard model ('' = the shipped models/hazard.ts)")
    parser.add_argument('--device', default='auto', help='inference device (auto, cpu, cuda)')
    parser.add_argument('--render-device', default='auto', help='rendering device')
    parser.add_argument('--no-progress', action='store_true', help='no progress bars')
    parser.set_defaults(func=run)


def run(args) -> int:
    from spacenav_perception.demo import DemoConfig, DemoError, quick, run_demo
    try:
        width, height = (int(v) for v in args.lunar_size.lower().split('x'))
    except ValueError:
        print(f'spacenav demo: error: --lunar-size {args.lunar_size!r} is not WIDTHxHEIGHT',
              file=sys.stderr)
        return 2
    for flag, value in (('--rate-hz', args.rate_hz), ('--lunar-rate-hz', args.lunar_rate_hz)):
        if not value > 0:
            print(f'spacenav demo: error: {flag} must be above 0, not {value}', file=sys.stderr)
            return 2
    if args.queue_depth < 1:
        print(f'spacenav demo: error: --queue-depth must be at least 1, not {args.queue_depth}',
              file=sys.stderr)
        return 2
    config = DemoConfig(out=args.out, n_asteroid=args.n_asteroid, n_lunar=args.n_lunar,
                        asteroid_size=args.asteroid_size, lunar_width=width,
                        lunar_height=height, seed=args.seed, rate_hz=args.rate_hz,
                        lunar_rate_hz=args.lunar_rate_hz,
                        queue_depth=args.queue_depth,
                        model_centroid=args.model_centroid, model_hazard=args.model_hazard,
                        device=args.device, render_device=args.render_device,
                        progress=not args.no_progress)
    if args.quick:
        config = quick(config)
    try:
        run_demo(config)
    except DemoError as exc:
        print(f'spacenav demo: error: {exc}', file=sys.stderr)
        return 2
    return 0
