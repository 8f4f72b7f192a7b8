"""Analytic reference networks whose answers are known exactly (tests, demos, benchmarks).

Modules
-------
IntensityCentroid      (N, 1, H, W) in [0, 1] -> (N, 3) = (u, v, logit), output 'xy_norm_logit'.
                       u = sum(I * (col + 0.5) / W) / sum(I), v likewise with rows (image extent
                       coordinates), logit = +20 when sum(I) > 1e-6 else -20.
                       Full-resolution x = u * W - 0.5 = the intensity-weighted mean column.
IntensityCentroidPx    (N, 1, H, W) -> (N, 2) = intensity-weighted mean (col, row) in model-input
                       pixels, output 'xy_input_px' (thesis convention, confidence 1).
ThresholdSegmenter     (N, 3, H, W) RGB in [0, 1] -> (N, 4, H, W) logits = (0.25, G, B, R), so
                       class = argmax over [ground, small_rock, large_rock, sky] (first wins on a
                       tie): ground (0) when every channel < 0.25, else the dominant channel
                       G -> small_rock (1), B -> large_rock (2), R -> sky (3) (the lunar mask
                       colours). `expected_classes(rgb_float)` gives the same answer in numpy,
                       `reference_logits(rgb_float)` the (4, H, W) logits.
ShiftedThresholdSegmenter  ThresholdSegmenter's logits of the pixel one column to the left (the
                       first column keeps its own): not mirror-symmetric, so tests can tell
                       whether a flip-averaging predictor mirrors the answer back.

Export (stable signature, used by other modules' tests)
-------------------------------------------------------
export_reference_model(kind, out_dir, height, width, formats=('ts',), name=None) -> Path
    kind: 'centroid' (IntensityCentroid), 'centroid_px' (IntensityCentroidPx), 'segmentation'
    (ThresholdSegmenter) or 'segmentation_shifted' (ShiftedThresholdSegmenter). Writes OUT_DIR/NAME.ts (and NAME.pt2 via torch.export.save, NAME.onnx
    via torch.onnx.export when in `formats`) for a (1, C, height, width) input, plus the manifest
    OUT_DIR/NAME.json with every file's sha256 (input resize 'area', mean 0, std 1). NAME
    defaults to 'reference_<kind>'. Returns the path of the first format in `formats`.
    With height/width equal to the test image size the resize is the identity, so a predictor's
    full-resolution centroid equals the analytic one (to float32 rounding).

Command line: python -m spacenav_perception.nets.reference KIND OUT_DIR HEIGHT WIDTH [--formats ts,pt2,onnx]
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.lunar_classes import CLASS_NAMES as LUNAR_CLASS_NAMES
from ..core.manifest import write_manifest

LOGIT = 20.0
EPS = 1e-6
CLASS_NAMES = list(LUNAR_CLASS_NAMES)


def _weighted_means(x: torch.Tensor):
    """Intensity-weighted mean column and row (pixel-centre coordinates) and total intensity."""
    n, _, h, w = x.shape
    img = x[:, 0]
    cols = torch.arange(w, dtype=x.dtype, device=x.device)
    rows = torch.arange(h, dtype=x.dtype, device=x.device)
    total = img.sum(dim=(1, 2))
    safe = torch.clamp(total, min=EPS)
    mean_col = (img.sum(dim=1) * cols).sum(dim=1) / safe
    mean_row = (img.sum(dim=2) * rows).sum(dim=1) / safe
    return mean_col, mean_row, total


class IntensityCentroid(nn.Module):
    """(N, 1, H, W) -> (N, 3) (u, v, logit) in image-extent coordinates."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        mean_col, mean_row, total = _weighted_means(x)
        u = (mean_col + 0.5) / w
        v = (mean_row + 0.5) / h
        logit = (total > EPS).to(x.dtype) * (2 * LOGIT) - LOGIT
        return torch.stack([u, v, logit], dim=1)


class IntensityCentroidPx(nn.Module):
    """(N, 1, H, W) -> (N, 2) intensity-weighted mean (col, row) in input pixels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean_col, mean_row, _ = _weighted_means(x)
        return torch.stack([mean_col, mean_row], dim=1)


class ThresholdSegmenter(nn.Module):
    """(N, 3, H, W) RGB -> (N, 4, H, W) logits (0.25, G, B, R) by a fixed 1x1 convolution."""

    def __init__(self):
        super().__init__()
        weight = torch.zeros(4, 3, 1, 1)
        weight[1, 1] = 1.0   # small_rock <- G
        weight[2, 2] = 1.0   # large_rock <- B
        weight[3, 0] = 1.0   # sky <- R
        bias = torch.tensor([0.25, 0.0, 0.0, 0.0])
        self.register_buffer('weight', weight)
        self.register_buffer('bias', bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x, self.weight, self.bias)


class ShiftedThresholdSegmenter(ThresholdSegmenter):
    """ThresholdSegmenter's logits taken one column to the right: out[..., x] = logits of the
    input pixel x - 1 (x = 0 keeps its own)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.cat([x[..., :1], x[..., :-1]], dim=3))


def reference_logits(rgb: np.ndarray) -> np.ndarray:
    """ThresholdSegmenter's (4, H, W) float32 logits for an (H, W, 3) float RGB image."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return np.stack([np.full(rgb.shape[:2], 0.25, np.float32),
                     rgb[..., 1], rgb[..., 2], rgb[..., 0]], axis=0)


def expected_classes(rgb: np.ndarray) -> np.ndarray:
    """ThresholdSegmenter's answer for an (H, W, 3) float RGB image in [0, 1] -> uint8 ids."""
    return np.argmax(reference_logits(rgb), axis=0).astype(np.uint8)


_KINDS = {
    # kind: (module factory, task, output, channels, class names)
    'centroid': (IntensityCentroid, 'centroid', 'xy_norm_logit', 1, []),
    'centroid_px': (IntensityCentroidPx, 'centroid', 'xy_input_px', 1, []),
    'segmentation': (ThresholdSegmenter, 'segmentation', 'logits_nchw', 3, CLASS_NAMES),
    'segmentation_shifted': (ShiftedThresholdSegmenter, 'segmentation', 'logits_nchw', 3,
                             CLASS_NAMES),
}
_SUFFIX = {'ts': '.ts', 'pt2': '.pt2', 'onnx': '.onnx'}


def export_reference_model(kind: str, out_dir, height: int, width: int,
                           formats=('ts',), name: str | None = None) -> Path:
    """Export a reference module (see module docstring) and its manifest; returns a model path."""
    if kind not in _KINDS:
        raise ValueError(f'unknown reference kind {kind!r}; use one of {", ".join(_KINDS)}')
    formats = tuple(formats)
    unknown = [f for f in formats if f not in _SUFFIX]
    if not formats or unknown:
        raise ValueError(f'formats {formats!r}: each must be one of {", ".join(_SUFFIX)}')
    factory, task, output, channels, class_names = _KINDS[kind]
    name = name or f'reference_{kind}'
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    module = factory().eval()
    example = (torch.rand(1, channels, int(height), int(width)),)
    paths = []
    for fmt in formats:
        path = out_dir / (name + _SUFFIX[fmt])
        if fmt == 'ts':
            with warnings.catch_warnings():   # TorchScript is still a supported format here
                warnings.filterwarnings('ignore', r'.*torch\.jit.*deprecated',
                                        DeprecationWarning)
                torch.jit.save(torch.jit.trace(module, example, check_trace=False), str(path))
        elif fmt == 'pt2':
            torch.export.save(torch.export.export(module, example), str(path))
        else:
            _export_onnx(module, example, path)
        paths.append(path)
    write_manifest(
        paths, name=name, task=task, arch=type(module).__name__,
        input={'height': int(height), 'width': int(width), 'channels': channels,
               'resize': 'area', 'mean': [0.0], 'std': [1.0]},
        output=output, class_names=class_names,
        metrics={}, training={'command': 'analytic (no training)', 'device': 'none', 'seconds': 0},
        export_command=(f'python -m spacenav_perception.nets.reference {kind} {out_dir} '
                        f'{int(height)} {int(width)} --formats {",".join(formats)}'
                        + (f' --name {name}' if name != f'reference_{kind}' else '')))
    return paths[0]


def _export_onnx(module: nn.Module, example, path: Path) -> None:
    import logging
    # The exporter logs one line per optional torchvision op it skips: noise for these modules.
    quiet = logging.getLogger('torch.onnx._internal.exporter._registration')
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            torch.onnx.export(module, example, str(path), input_names=['input'],
                              output_names=['output'], dynamo=True, external_data=False,
                              verbose=False)
    finally:
        quiet.setLevel(level)
    stray = path.with_name(path.name + '.data')
    if stray.exists():   # tiny models carry their weights inline
        stray.unlink()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m spacenav_perception.nets.reference',
        description='Export an analytic reference model (exactly known answers) with its manifest.')
    parser.add_argument('kind', choices=sorted(_KINDS))
    parser.add_argument('out_dir', type=Path)
    parser.add_argument('height', type=int)
    parser.add_argument('width', type=int)
    parser.add_argument('--formats', default='ts', help='comma list of ts, pt2, onnx (default ts)')
    parser.add_argument('--name', default=None, help='file stem (default reference_KIND)')
    args = parser.parse_args(argv)
    path = export_reference_model(args.kind, args.out_dir, args.height, args.width,
                                  formats=tuple(args.formats.split(',')), name=args.name)
    print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
