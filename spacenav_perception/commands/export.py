"""`spacenav export`: training checkpoint -> .ts / .pt2 / .onnx + one JSON manifest."""
from __future__ import annotations

import argparse

from spacenav_perception.commands import HelpFormatter


def register(subparsers) -> None:
    p = subparsers.add_parser(
        'export', help='export a checkpoint to TorchScript / torch.export / ONNX + manifest',
        formatter_class=HelpFormatter,
        description='Rebuild the network of a training checkpoint (RUNDIR/best.pt), write the '
                    'requested formats beside --out (models/NAME.ts -> NAME.pt2, NAME.onnx), '
                    'verify each against the eager model, and write ONE manifest NAME.json '
                    '(sha256 of every file, task, arch, input, output convention, class names, '
                    'training metrics, training command/device/seconds, export command).')
    p.add_argument('--checkpoint', required=True, help='RUNDIR/best.pt (or last.pt)')
    p.add_argument('--out', required=True, help='primary model file, e.g. models/centroid.ts')
    p.add_argument('--formats', default='ts,pt2,onnx',
                   help='comma-separated subset of ts,pt2,onnx (the --out suffix is always included)')
    p.add_argument('--tta', choices=('none', 'd4', 'hflip'), default='none',
                   help='test-time augmentation built into the exported graph; d4 (centroid '
                        'models): average over the 8 flips/transposes, 8x the compute; hflip '
                        '(segmentation models): average over the frame and its mirror image, 2x '
                        'the compute')
    p.add_argument('--input-hw', nargs=2, type=int, metavar=('H', 'W'),
                   help='model input height width instead of the training '
                        'size: trades accuracy for speed with a fully convolutional network; '
                        'the manifest keeps the training size under training.input_hw')
    p.add_argument('--logit-offset', nargs='+', type=float, metavar='V',
                   help='segmentation models: one number per class added to the logits before '
                        'the argmax, written to the manifest (hazard_node and eval apply it); '
                        'spacenav calibrate segmentation chooses them on validation data')
    p.add_argument('--zoom-refine', type=float, default=0.0, metavar='F',
                   help='centroid models: written to the manifest; centroid_node and eval then '
                        'run the model a second time on a crop around its first answer, F times '
                        'the lit body\'s extent wide (0: one pass); choose F on validation data '
                        'with spacenav eval centroid --zoom-refine')
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path
    from spacenav_perception.export import export_checkpoint, FORMATS
    formats = [f.strip() for f in args.formats.split(',') if f.strip()]
    primary = Path(args.out).suffix.lstrip('.')
    if primary not in FORMATS:
        print(f'--out must end in one of .{", .".join(FORMATS)}')
        return 2
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        print(f'unknown format(s) {bad}; known: {", ".join(FORMATS)}')
        return 2
    if primary not in formats:
        formats.insert(0, primary)
    try:
        export_checkpoint(args.checkpoint, args.out, formats, tta=args.tta, input_hw=args.input_hw,
                          export_command=args.command_line, logit_offset=args.logit_offset,
                          zoom_refine=args.zoom_refine)
    except ValueError as exc:
        print(f'error: {exc}')
        return 2
    return 0 if Path(args.out).exists() else 1
