"""`spacenav synth`: render synthetic training/evaluation data sets.

    spacenav synth asteroid --n 3000 --seed 1 --out data/asteroid_train [--size 1024]
    spacenav synth lunar    --n 500  --seed 1 --out data/lunar_train [--width 720 --height 480]

Heavy modules (torch, the renderers) are imported inside the command functions.
"""
import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        'synth', help='render synthetic data sets (asteroid centroid, lunar hazard)',
        description='Render synthetic data sets in the layouts the loaders read '
                    '(see DEVELOPERS.md, "Datasets").')
    p.set_defaults(func=lambda args: _help(p))
    kinds = p.add_subparsers(dest='synth_kind', metavar='KIND')

    a = kinds.add_parser(
        'asteroid', help='Didymos/Dimorphos navigation-camera frames + centre-of-mass labels',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Ray-traced navigation-camera frames of the binary asteroid Didymos '
                    '(random spinning-top primary, moonlet, hard shadows, lunar-Lambert '
                    'reflectance, sensor noise).',
        epilog='Writes OUT/images/asteroid_NNNNNN.png (8-bit, SIZE x SIZE), OUT/meta.csv and\n'
               'OUT/labels.csv (image_name,x_coordinate,y_coordinate: the projection of the\n'
               "primary's centre of mass, full-resolution pixels, centre of the top-left pixel\n"
               '= (0, 0)). labels.csv is written last, atomically: it appears only when the run\n'
               'completes. Frame i depends only on (seed, i), so chunks rendered with\n'
               '--start-index into the same OUT merge into one data set.\n'
               "OUT/silhouettes/asteroid_NNNNNN.png (unless --no-silhouettes): the primary's\n"
               'whole silhouette (night side included), 255 on the body, 0 elsewhere; the\n'
               'default centroid model trains on it.')
    a.add_argument('--n', type=int, required=True, help='number of frames')
    a.add_argument('--seed', type=int, required=True, help='data set seed')
    a.add_argument('--out', required=True, help='output directory')
    a.add_argument('--size', type=int, default=1024, help='image width = height in pixels '
                   '(default 1024; the 5.5 deg field of view always spans the image)')
    a.add_argument('--device', default='auto', help="'auto' (CUDA when available), 'cpu', "
                   "'cuda', 'cuda:N'")
    a.add_argument('--start-index', type=int, default=0, help='index of the first frame')
    a.add_argument('--threads', type=int, default=1,
                   help='torch CPU threads (default 1: the renderer is fastest per core with one '
                        'thread; for more throughput run several processes with --start-index '
                        'into the same --out; 0: torch default)')
    _add_reflectance(a, 'frame')
    a.add_argument('--no-silhouettes', action='store_true',
                   help='do not write OUT/silhouettes/ (the shape masks used in training)')
    a.add_argument('--no-progress', action='store_true', help='no progress bar')
    a.set_defaults(func=run_asteroid)

    lu = kinds.add_parser('lunar', help='lunar surface renders + hazard masks (Kaggle layout)',
                          description='Synthetic lunar landscape renders with ground/rock/sky '
                                      'masks in the Kaggle layout (see DEVELOPERS.md).')
    lu.add_argument('--n', type=int, required=True, help='number of frames')
    lu.add_argument('--seed', type=int, required=True, help='data set seed')
    lu.add_argument('--out', required=True, help='output directory')
    lu.add_argument('--width', type=int, default=720, help='image width (default 720)')
    lu.add_argument('--height', type=int, default=480, help='image height (default 480)')
    lu.add_argument('--device', default='auto', help="'auto' (CUDA when available), 'cpu', 'cuda'")
    lu.add_argument('--start-index', type=int, default=0, help='index of the first frame')
    lu.add_argument('--threads', type=int, default=0,
                    help='torch CPU threads (0: torch default)')
    lu.add_argument('--workers', default='auto',
                    help="worker processes for the lunar renderer ('auto' or a number)")
    _add_reflectance(lu, 'view')
    lu.add_argument('--no-progress', action='store_true', help='no progress bar')
    lu.set_defaults(func=run_lunar)


# synth/reflectance.py MODES (not imported here: it imports torch; a test keeps them equal)
REFLECTANCE_MODES = ('lunar-lambert', 'varied')


def _add_reflectance(parser, unit: str) -> None:
    parser.add_argument(
        '--reflectance', choices=REFLECTANCE_MODES, default=REFLECTANCE_MODES[0],
        help=f"regolith reflectance: 'lunar-lambert' (McEwen's phase-dependent lunar-Lambert "
             f"law, every {unit}) or 'varied' (per {unit} one of lunar-Lambert with a random "
             'limb weight, Minnaert or Hapke, random parameters; the scene, sensor and noise '
             'are those of the default for the same seed and index) (default: lunar-lambert)')


def _help(parser) -> int:
    parser.print_help()
    return 2


def _threads(args):
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)


def run_asteroid(args) -> int:
    _threads(args)
    from spacenav_perception.synth.asteroid import render_dataset
    res = render_dataset(args.out, args.n, args.seed, size=args.size, device=args.device,
                         start_index=args.start_index, progress=not args.no_progress,
                         silhouettes=not args.no_silhouettes, reflectance=args.reflectance)
    print(f"wrote {res['n']} frames to {res['out_dir']} in {res['seconds']:.1f} s "
          f"({res['images_per_s']:.2f} frames/s on {res['device']})")
    return 0


def run_lunar(args) -> int:
    _threads(args)
    from spacenav_perception.synth.lunar import render_dataset
    workers = args.workers if args.workers == 'auto' else int(args.workers)
    render_dataset(args.out, args.n, args.seed, width=args.width, height=args.height,
                   device=args.device, start_index=args.start_index,
                   progress=not args.no_progress, workers=workers,
                   reflectance=args.reflectance)
    print(f'wrote {args.n} frames to {args.out}')
    return 0


def run(args) -> int:
    return int(args.func(args) or 0)
