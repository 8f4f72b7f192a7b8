"""`spacenav train centroid|segmentation`: train a model with the shared trainer."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spacenav_perception.commands import HelpFormatter
from spacenav_perception.core.manifest import COLOR_MODES
from spacenav_perception.data.augment import PHOTOMETRIC_MODES

# the same as training/segmentation_task.ARCHS and DEFAULT_ARCH (kept here so that --help needs
# no torch; test_nets.test_train_cli_segmentation_archs_match_the_task checks that they agree)
SEGMENTATION_ARCHS = ('hazardnet', 'hazardnet_fr', 'hazardnet_sp', 'unet')
SEGMENTATION_DEFAULT_ARCH = 'hazardnet_sp'
# the same as training/segmentation_losses.REGION_LOSSES and DEFAULT_REGION_LOSS (checked by
# test_segmentation_losses.test_train_cli_region_losses_match_the_module)
REGION_LOSSES = ('dice', 'lovasz')
DEFAULT_REGION_LOSS = 'dice'


def _common(p, defaults_note: str) -> None:
    p.add_argument('--data', required=True, nargs='+', metavar='DIR',
                   help='training dataset folder(s); several are read one after the other as '
                        'one training set (--limit applies to each)')
    p.add_argument('--val', required=True, help='validation dataset folder')
    p.add_argument('--out', required=True, help='run folder (checkpoints, curves, overlays)')
    p.add_argument('--epochs', type=int, default=None, help=f'epochs ({defaults_note})')
    p.add_argument('--batch-size', type=int, default=None,
                   help=f'global batch size, split over DDP ranks ({defaults_note})')
    p.add_argument('--lr', type=float, default=None, help=f'learning rate ({defaults_note})')
    p.add_argument('--weight-decay', type=float, default=None, help='AdamW weight decay (default: per --arch)')
    p.add_argument('--seed', type=int, default=0, help='seed for weights, shuffling, augmentation')
    p.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto',
                   help='auto: CUDA when available, else CPU')
    p.add_argument('--workers', type=int, default=0, help='DataLoader worker processes')
    p.add_argument('--threads', type=int, default=0, help='torch CPU threads (0: default)')
    p.add_argument('--resume', action='store_true', help='continue from OUT/last.pt')
    p.add_argument('--keep-epochs', action='store_true',
                   help='also keep every epoch\'s weights as OUT/epochN.pt (to choose among '
                        'them later by another measure than the validation metric)')
    p.add_argument('--init', default='', metavar='CKPT',
                   help='start from the weights of this checkpoint (RUNDIR/best.pt) or shipped '
                        'TorchScript model (models/NAME.ts, checked against its manifest); '
                        'fresh optimiser and schedule: fine-tuning / warm restart')
    p.add_argument('--amp', action='store_true', help='mixed precision (CUDA only)')
    p.add_argument('--overlay-every', type=int, default=5,
                   help='write a validation overlay PNG every N epochs')
    p.add_argument('--photometric', choices=PHOTOMETRIC_MODES, default=None,
                   help='image-only augmentation ranges: wide (exposure, gamma, noise, blur '
                        'wide enough for another camera or renderer) or narrow (the ranges of '
                        'sessions 1-7). Default: the shipped model\'s recipe, narrow for '
                        'centroid, wide for segmentation')
    p.add_argument('--limit', type=int, default=0, help='use only the first N samples (debug)')
    p.add_argument('--max-steps-per-epoch', type=int, default=0, help='cap steps (debug)')


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'train', help='train the centroid or segmentation network',
        description='Train with the shared trainer (tqdm, fixed seeds, checkpoints last.pt / '
                    'best.pt + config.json, loss curve and validation overlays every epoch). '
                    'Multi-process: torchrun --nproc_per_node=N -m spacenav_perception.cli '
                    'train ... (DDP: gloo on CPU, nccl on CUDA).')
    sub = parser.add_subparsers(dest='train_task', metavar='TASK')
    c = sub.add_parser(
        'centroid', formatter_class=HelpFormatter,
        help='asteroid centre-of-mass regression',
        description='Train a centroid model on DIR/images + labels.csv. --arch centroidnet '
                    '(default): 256x256 soft-argmax network, AdamW 2e-3 one-cycle, batch 32, '
                    '30 epochs. --arch thesis: the thesis 6-conv CNN with its own recipe '
                    '(128x128, MSE, Adam 1e-4, batch 32, no augmentation).')
    _common(c, 'default: per --arch')
    c.add_argument('--arch', choices=('centroidnet', 'thesis'), default='centroidnet',
                   help='centroidnet: the shipped design; thesis: the thesis baseline CNN')
    c.add_argument('--input-size', type=int, default=None,
                   help='square model input (default 256 centroidnet, 128 thesis)')
    c.add_argument('--p-empty', type=float, default=0.1,
                   help='fraction of synthetic no-target frames (centroidnet)')
    c.add_argument('--shape-weight', type=float, default=20.0,
                   help="weight of the silhouette term (centroidnet; used where DATA has "
                        "silhouettes/, which `spacenav synth asteroid` writes; 0: off)")
    c.add_argument('--zoom-crops', type=float, default=0.0, metavar='P',
                   help='fraction of in-view training frames shown as the node\'s zoom-refine '
                        'pass sees them: a crop around the body at the frame\'s own resolution '
                        '(centroidnet; 0: whole frames only)')
    c.set_defaults(func=run_centroid)
    s = sub.add_parser(
        'segmentation', formatter_class=HelpFormatter,
        help='lunar terrain segmentation (ground, small rock, large rock, sky)',
        description='Train a segmentation model on the Kaggle lunar layout. --arch '
                    'hazardnet_sp (default, the shipped design): residual encoder + U-Net '
                    'decoder with a sub-pixel output stage, CE + Dice, AdamW 2e-3 one-cycle. '
                    '--arch unet: the report\'s custom U-Net, CE, Adam 1e-3.')
    _common(s, 'default: per --arch')
    s.add_argument('--arch', choices=SEGMENTATION_ARCHS, default=SEGMENTATION_DEFAULT_ARCH,
                   help='hazardnet_sp: per-pixel logits from a stride-2 sub-pixel head fed with '
                        'the space-to-depth input; hazardnet: logits upsampled from stride 2 '
                        '(about 3 ms faster on 2 CPU cores, less accurate); hazardnet_fr: an '
                        'output stage at the input\'s resolution (slower)')
    s.add_argument('--masks', choices=('clean', 'ground'), default='clean',
                   help='training and validation masks: images/clean or images/ground')
    s.add_argument('--input-hw', type=int, nargs=2, default=None, metavar=('H', 'W'),
                   help='model input height width (default 240 352)')
    s.add_argument('--crop-hw', type=int, nargs=2, default=None, metavar=('H', 'W'),
                   help='train on random crops of this size taken from the resized frames '
                        '(cheaper steps; validation always sees whole frames)')
    s.add_argument('--color', choices=COLOR_MODES, default='rgb',
                   help='what the network sees of a colour frame: rgb, or luma (BT.601) in all '
                        'three channels, so that a colour cast of another camera or renderer '
                        'cannot change the result; written to the manifest, the runtime does the '
                        'same')
    s.add_argument('--region-loss', choices=REGION_LOSSES, default=DEFAULT_REGION_LOSS,
                   help='the term added to the class-weighted cross-entropy (hazardnet archs): '
                        'dice (soft Dice; trains the shipped model from scratch) or lovasz '
                        '(Lovasz-softmax, a surrogate of the per-class IoU; the shipped model\'s '
                        'last fine-tunes, see its manifest); the report U-Net uses '
                        'cross-entropy alone')
    s.set_defaults(func=run_segmentation)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _config(args, defaults: dict):
    from spacenav_perception.training.trainer import TrainConfig
    pick = lambda v, k: defaults[k] if v is None else v
    return TrainConfig(
        out=args.out, epochs=pick(args.epochs, 'epochs'), batch_size=pick(args.batch_size, 'batch_size'),
        lr=pick(args.lr, 'lr'), weight_decay=pick(args.weight_decay, 'weight_decay'),
        seed=args.seed, device=args.device, workers=args.workers, resume=args.resume,
        amp=args.amp, overlay_every=args.overlay_every, threads=args.threads,
        max_steps_per_epoch=args.max_steps_per_epoch, init=args.init,
        keep_epochs=args.keep_epochs,
        command=args.command_line)


def _run(task, cfg) -> int:
    import sys
    from spacenav_perception.data.problems import UnusableDataset
    from spacenav_perception.training.trainer import (IncompatibleCheckpoint, Trainer,
                                                      cleanup_distributed)
    if cfg.init and not Path(cfg.init).is_file():
        print(f'spacenav train: error: --init {cfg.init}: no such checkpoint file', file=sys.stderr)
        return 2
    try:
        result = Trainer(task, cfg).fit()
    except (UnusableDataset, IncompatibleCheckpoint) as exc:
        print(f'spacenav train: error: {exc}', file=sys.stderr)
        return 2
    finally:
        cleanup_distributed()
    print(f'best {task.metric_name}: {result["best"]}  (run folder {cfg.out})')
    return 0


def run_centroid(args) -> int:
    from spacenav_perception.training.centroid_task import (
        DEFAULT_PHOTOMETRIC as CENTROID_PHOTOMETRIC, CentroidTask, arch_defaults)
    try:
        task = CentroidTask(args.data, args.val, args.arch, args.input_size, args.seed,
                            args.p_empty, args.limit, args.shape_weight,
                            args.photometric or CENTROID_PHOTOMETRIC, args.zoom_crops)
    except ValueError as exc:
        print(f'spacenav train: error: {exc}', file=sys.stderr)
        return 2
    return _run(task, _config(args, arch_defaults(args.arch)))


def run_segmentation(args) -> int:
    from spacenav_perception.training.segmentation_task import (
        DEFAULT_PHOTOMETRIC as SEGMENTATION_PHOTOMETRIC, SegmentationTask, arch_defaults)
    try:
        task = SegmentationTask(args.data, args.val, args.arch, args.masks, args.input_hw,
                                args.seed, args.limit, args.crop_hw, args.color,
                                args.photometric or SEGMENTATION_PHOTOMETRIC, args.region_loss)
    except ValueError as exc:     # an option this arch does not take (e.g. unet + lovasz)
        print(f'spacenav train: error: {exc}', file=sys.stderr)
        return 2
    return _run(task, _config(args, arch_defaults(args.arch)))
