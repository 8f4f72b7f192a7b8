"""`spacenav calibrate segmentation`: choose the per-class logit offsets a segmentation model's
manifest carries (evaluation/logit_calibration.py) on validation data."""
from __future__ import annotations

import argparse
import json
import sys

from spacenav_perception.commands import HelpFormatter
from spacenav_perception.core.class_map import DEFAULT_FLIP_AVERAGE


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'calibrate', help='choose a segmentation model\'s logit offsets on validation data',
        description='Choose decision rules of a model on validation data.')
    sub = parser.add_subparsers(dest='calibrate_task', metavar='TASK')
    s = sub.add_parser(
        'segmentation', formatter_class=HelpFormatter,
        help='per-class logit offsets that maximise validation mIoU',
        description='Run the model once over the frames (the node\'s predictor with no offset) '
                    'and score every candidate offset vector: each of --values for each of '
                    '--classes (0 for the other classes), the manifest\'s current offset and '
                    'none. Prints mIoU and per-class IoU of none, the manifest\'s and the best, '
                    'and how to ship the best (spacenav export ... --logit-offset). Speck '
                    'removal is off while searching; measure the result with spacenav eval '
                    'segmentation --logit-offset. Use validation frames, never the test split.')
    s.add_argument('--data', required=True, nargs='+', metavar='DIR',
                   help='lunar dataset folder(s) (images/render + masks), pooled')
    s.add_argument('--model', default=None, help='model file (default: packaged models/hazard.ts)')
    s.add_argument('--masks', choices=('clean', 'ground'), default='clean',
                   help='truth masks: clean (small-area rocks removed) or ground (all rocks)')
    s.add_argument('--classes', nargs='+', default=None, metavar='CLASS',
                   help='class names or ids whose offset is searched; the others stay 0 (only '
                        'differences between offsets matter) (default: small_rock large_rock, '
                        'hazard_node\'s hazard classes)')
    s.add_argument('--values', nargs='+', type=float, default=None, metavar='V',
                   help='offsets tried for each searched class (default: -2 to 1 in steps of '
                        '0.25); the grid has len(values) ** len(classes) candidates')
    s.add_argument('--min-recall', type=float, default=None, metavar='R',
                   help='only offsets that keep the pixel recall of the searched classes taken '
                        'together (for rocks: /hazard_mask\'s recall) at R or more, e.g. the '
                        'recall printed for none, so that no hazard is traded for IoU (default: '
                        'no limit)')
    s.add_argument('--flip-average', action=argparse.BooleanOptionalAction,
                   default=DEFAULT_FLIP_AVERAGE,
                   help='average the logits over the frame and its mirror image, as '
                        'hazard_node\'s flip_average (default: '
                        f'{"on" if DEFAULT_FLIP_AVERAGE else "off"})')
    s.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='cpu',
                   help='inference device (auto: CUDA when available)')
    s.add_argument('--limit', type=int, default=0, help='first N frames only (0: all)')
    s.add_argument('--json', action='store_true', help='print one JSON object')
    s.set_defaults(func=run_segmentation)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def run_segmentation(args) -> int:
    from spacenav_perception.evaluation.logit_calibration import (DEFAULT_VALUES,
                                                                  calibrate_logit_offsets,
                                                                  format_calibration)
    try:
        r = calibrate_logit_offsets(args.data, args.model, args.masks, args.device,
                                    classes=args.classes, values=args.values or DEFAULT_VALUES,
                                    flip_average=args.flip_average, limit=args.limit,
                                    progress=not args.json, min_recall=args.min_recall)
    except ValueError as exc:      # also a dataset without frames (UnusableDataset)
        print(f'spacenav calibrate: error: {exc}', file=sys.stderr)
        return 2
    print(json.dumps(r) if args.json else format_calibration(r))
    return 0
