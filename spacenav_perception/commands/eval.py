"""`spacenav eval centroid|segmentation`: score a model file on a dataset through the runtime
path the nodes use (InferenceEngine + predictor), so any .ts / .pt2 / .onnx the node accepts
can be evaluated."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from spacenav_perception.commands import HelpFormatter
from spacenav_perception.core.class_map import (DEFAULT_FLIP_AVERAGE, DEFAULT_UPSAMPLING,
                                                UPSAMPLING_MODES)
from spacenav_perception.core.hazard_specks import DEFAULT_MIN_HAZARD_REGION_PX
from spacenav_perception.evaluation.perturbations import PERTURBATIONS

PERTURB_HELP = ('apply this change to every frame first, to measure robustness to another '
                'camera or renderer: ' + ', '.join(PERTURBATIONS) + ' (gainK: exposure x K, '
                'gammaG: I**G, blurS: Gaussian PSF sigma S px, noiseS: sigma S of full scale, '
                'offsetV: black level +V, warm: R x1.1 B x0.8, gray: luma in R, G, B; colour '
                'changes leave mono frames as they are)')


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'eval', help='evaluate a centroid or segmentation model on a dataset',
        description='Evaluate a model file through InferenceEngine + the task predictor.')
    sub = parser.add_subparsers(dest='eval_task', metavar='TASK')
    c = sub.add_parser(
        'centroid', formatter_class=HelpFormatter,
        help='centroid error in full-resolution px vs the centre-of-brightness baseline',
        description='Error in full-resolution px (n, mean, median, p90, p95, max) of the model '
                    'and of the classical baseline cob (Otsu threshold + intensity-weighted '
                    'centre of brightness); where meta.csv has the columns, also by phase-angle bin '
                    '(phase_deg), whole vs cut by the frame edge (cut_by_edge), by the '
                    "renderer's reflectance law (reflectance), as a "
                    'fraction of the apparent diameter (apparent_diameter_px) and split along / '
                    "across the sun's direction in the image (sun_cam_x, sun_cam_y; JSON key "
                    'by_sun_axis). '
                    'Frames the model calls not-in-view are misses: counted in n_no_target and '
                    'excluded from the px statistics (all_frames in the JSON repeats them with '
                    'the position used anyway).')
    c.add_argument('--data', required=True, help='asteroid dataset (images/ + labels.csv)')
    c.add_argument('--model', default=None, help='model file (default: packaged models/centroid.ts)')
    c.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='cpu',
                   help='inference device (auto: CUDA when available)')
    c.add_argument('--min-confidence', type=float, default=0.5,
                   help='in-view threshold on sigmoid(logit), as the node uses')
    c.add_argument('--limit', type=int, default=0, help='first N frames only')
    c.add_argument('--no-progress', action='store_true',
                   help='no progress bar (--json implies it)')
    c.add_argument('--json', action='store_true', help='print one JSON object')
    c.add_argument('--perturb', choices=PERTURBATIONS, default='none', metavar='NAME',
                   help=PERTURB_HELP)
    c.add_argument('--zoom-refine', type=float, default=None, metavar='F',
                   help='second pass of the model on a crop around its first answer, F times '
                        'the lit body\'s extent wide, as centroid_node\'s zoom_refine '
                        'parameter (0: one pass; not given: the model manifest\'s zoom_refine)')
    c.add_argument('--out', default=None, help='folder for the error plot, JSON and per-frame CSV')
    c.set_defaults(func=run_centroid)
    s = sub.add_parser(
        'segmentation', formatter_class=HelpFormatter,
        help='per-class IoU, mIoU, pixel accuracy',
        description='Per-class IoU from one confusion matrix accumulated over the set at the '
                    'frames\' own resolution, mIoU, pixel accuracy; rocks found by size (a '
                    'truth rock is found when half its pixels are predicted rock; JSON key '
                    '"rocks", with false alarms); where meta.csv has a reflectance column '
                    '(synth lunar --reflectance varied), mIoU and IoU per reflectance law '
                    '(JSON key "by_reflectance"); a confusion-matrix PNG and overlay samples '
                    'with --out.')
    s.add_argument('--data', required=True, help='lunar dataset (images/render + masks)')
    s.add_argument('--model', default=None, help='model file (default: packaged models/hazard.ts)')
    s.add_argument('--masks', choices=('clean', 'ground'), default='clean',
                   help='truth masks: clean (small-area rocks removed) or ground (all rocks)')
    s.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='cpu',
                   help='inference device (auto: CUDA when available)')
    s.add_argument('--limit', type=int, default=0, help='first N frames only')
    s.add_argument('--no-progress', action='store_true',
                   help='no progress bar (--json implies it)')
    s.add_argument('--json', action='store_true', help='print one JSON object')
    s.add_argument('--perturb', choices=PERTURBATIONS, default='none', metavar='NAME',
                   help=PERTURB_HELP)
    s.add_argument('--min-hazard-region-px', type=float, default=DEFAULT_MIN_HAZARD_REGION_PX,
                   metavar='PX',
                   help='rock regions smaller than PX input pixels count as ground, as in '
                        'hazard_node\'s parameter of that name (default: the node\'s default, '
                        f'{DEFAULT_MIN_HAZARD_REGION_PX}; 0: the raw argmax)')
    s.add_argument('--flip-average', action=argparse.BooleanOptionalAction,
                   default=DEFAULT_FLIP_AVERAGE,
                   help='also run the model on each frame mirrored left-right and sum the '
                        'logits, as hazard_node\'s flip_average parameter (default: the '
                        f'node\'s, {"on" if DEFAULT_FLIP_AVERAGE else "off"})')
    s.add_argument('--upsampling', choices=UPSAMPLING_MODES, default=DEFAULT_UPSAMPLING,
                   help='class map at the frame resolution, as hazard_node\'s upsampling '
                        'parameter: bilinear = argmax of the upsampled logits, nearest = '
                        f'upsampled model-resolution argmax (default: {DEFAULT_UPSAMPLING})')
    s.add_argument('--logit-offset', nargs='+', type=float, default=None, metavar='V',
                   help='one number per class added to the logits before the argmax, as '
                        'hazard_node\'s logit_offset parameter (not given: the model manifest\'s '
                        'logit_offset; 0 0 0 0: the network\'s own argmax)')
    s.add_argument('--out', default=None, help='folder for the confusion matrix, overlays, JSON')
    s.set_defaults(func=run_segmentation)
    o = sub.add_parser(
        'centroid-oracle', formatter_class=HelpFormatter,
        help='how much centroid error the lit, visible surface alone leaves (a study)',
        description='For frames written by `spacenav synth asteroid` (meta.csv seed and index), '
                    'draw each scene again, find the primary\'s lit surface points the frame '
                    'shows, and measure the error of an oracle that is given the exact radii at '
                    'those points, the body\'s pose and the renderer\'s shape prior (linear, '
                    'probabilistic PCA of the radii) on held-out shapes. Figures in the frame\'s '
                    'px: pooled median / p95 / mean, and per phase bin the rms along / across '
                    'the sun\'s image direction. Not a bound either way: it tells how much error '
                    'the unseen side of the body explains. With --model-errors, the model\'s '
                    'errors on the same frames are put beside it.')
    o.add_argument('--data', required=True,
                   help='asteroid dataset rendered by spacenav synth asteroid (meta.csv)')
    o.add_argument('--model-errors', default=None, metavar='CSV',
                   help='per_frame.csv from `spacenav eval centroid --out` on the same data: '
                        'the model\'s error on every frame (error_any_px: its position is used '
                        'also where it called the body not in view)')
    o.add_argument('--shapes', type=int, default=4000,
                   help='primaries drawn to fit the shape prior')
    o.add_argument('--held-out', type=int, default=500,
                   help='further primaries the oracle\'s errors are measured on')
    o.add_argument('--components', type=int, default=250, help='PPCA components of the prior')
    o.add_argument('--seed', type=int, default=987654, help='seed of the prior\'s shapes')
    o.add_argument('--limit', type=int, default=0, help='first N frames only')
    o.add_argument('--no-progress', action='store_true',
                   help='no progress bar (--json implies it)')
    o.add_argument('--json', action='store_true',
                   help='print one JSON object (per-frame rows under "frames")')
    o.set_defaults(func=run_centroid_oracle)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def run_centroid(args) -> int:
    from spacenav_perception.evaluation.centroid_eval import evaluate_centroid, format_table
    try:
        r = evaluate_centroid(args.data, args.model, args.device, args.out, args.min_confidence,
                              args.limit, progress=not (args.json or args.no_progress),
                              perturbation=args.perturb, zoom_refine=args.zoom_refine)
    except ValueError as exc:      # e.g. a --zoom-refine out of range
        print(f'spacenav eval: error: {exc}', file=sys.stderr)
        return 2
    print(json.dumps(r) if args.json else format_table(r))
    return 0


def run_segmentation(args) -> int:
    from spacenav_perception.evaluation.segmentation_eval import evaluate_segmentation, format_table
    try:
        r = evaluate_segmentation(args.data, args.model, args.masks, args.device, args.out,
                                  args.limit, progress=not (args.json or args.no_progress),
                                  perturbation=args.perturb,
                                  min_hazard_region_px=args.min_hazard_region_px,
                                  flip_average=args.flip_average, upsampling=args.upsampling,
                                  logit_offset=args.logit_offset)
    except ValueError as exc:      # e.g. a --logit-offset that does not fit the model
        print(f'spacenav eval: error: {exc}', file=sys.stderr)
        return 2
    print(json.dumps(r) if args.json else format_table(r))
    return 0


def run_centroid_oracle(args) -> int:
    from spacenav_perception.evaluation import lit_surface_oracle as oracle
    try:
        oracle.read_frames(args.data)              # clear errors before minutes of shapes
        if args.model_errors and not Path(args.model_errors).is_file():
            raise FileNotFoundError(f'no such per-frame CSV: {args.model_errors}')
        prior = oracle.fit_shape_prior(args.shapes, args.seed, args.components, args.held_out,
                                       progress=not (args.json or args.no_progress))
        r = oracle.study(args.data, prior, args.limit,
                         progress=not (args.json or args.no_progress),
                         model_per_frame=args.model_errors)
    except (ValueError, FileNotFoundError) as exc:
        print(f'spacenav eval: error: {exc}', file=sys.stderr)
        return 2
    print(json.dumps(r) if args.json else oracle.format_table(r))
    return 0
