"""Checkpoint -> TorchScript (.ts, shipped), torch.export (.pt2) and ONNX (.onnx) + ONE manifest.

`export_checkpoint(checkpoint, out)` rebuilds the network named in the checkpoint's config,
loads the plain state dict (torch.load(..., weights_only=True)), writes each requested format,
checks every file against the eager model on a fixed random input (same outputs within a
tolerance; a format that cannot be produced or verified is reported and left out), then writes
models/NAME.json through core.manifest.write_manifest with the sha256 of each file.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

FORMATS = ('ts', 'pt2', 'onnx')


def build_from_config(config: dict) -> torch.nn.Module:
    task, arch = config['task'], config['arch']
    if task == 'centroid':
        from .training.centroid_task import build_model
        return build_model(arch)
    if task == 'segmentation':
        from .training.segmentation_task import build_model
        return build_model(arch)
    raise ValueError(f'unknown task {task!r} in checkpoint config')


def load_checkpoint_model(checkpoint) -> tuple[torch.nn.Module, dict]:
    """(eval-mode model on CPU, config dict) from RUNDIR/best.pt or last.pt."""
    from .training.trainer import checkpoint_weights, load_checkpoint
    checkpoint = Path(checkpoint)
    ck = load_checkpoint(checkpoint)
    if 'config' in ck:
        config = json.loads(ck['config'])
    else:
        config = json.loads((checkpoint.parent / 'config.json').read_text())
    model = build_from_config(config)
    model.load_state_dict(checkpoint_weights(ck))
    model.eval()
    return model, config


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def _check(name: str, ref: torch.Tensor, got: torch.Tensor, atol: float, rtol: float) -> float:
    if tuple(ref.shape) != tuple(got.shape):
        raise RuntimeError(f'{name}: output shape {tuple(got.shape)} != eager {tuple(ref.shape)}')
    diff = _max_diff(ref, got)
    tol = atol + rtol * float(ref.abs().max())
    if not diff <= tol:
        raise RuntimeError(f'{name}: max |difference| {diff:.3g} to the eager model exceeds {tol:.3g}')
    return diff


def export_model(model: torch.nn.Module, config: dict, out, formats=('ts', 'pt2', 'onnx'),
                 metrics: dict | None = None, training: dict | None = None,
                 export_command: str | None = None, atol: float = 1e-4, rtol: float = 1e-4,
                 log=print, tta: str = 'none', logit_offset=None,
                 zoom_refine: float = 0.0) -> dict:
    """Write the formats beside `out` (models/NAME.ts), verify them, write models/NAME.json.
    `logit_offset` (segmentation): per-class numbers the predictor adds to the logits before
    the argmax, written to the manifest (the exported graph is the network's own).
    `zoom_refine` (centroid): the predictor's second-pass crop factor written to the manifest
    (core/zoom_refine.py; 0 = one pass).
    Returns {'files': [...], 'manifest': path, 'max_abs_diff': {fmt: diff}, 'failed': {fmt: why}}."""
    from .core.manifest import logit_offset_problem, write_manifest, zoom_refine_problem
    offset = [float(v) for v in logit_offset] if logit_offset else []
    problem = (logit_offset_problem(offset, config['task'], len(config.get('class_names', [])))
               or zoom_refine_problem(zoom_refine, config['task']))
    if problem:
        raise ValueError(problem)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.with_suffix('')
    inp = config['input']
    gen = torch.Generator().manual_seed(1234)
    x = torch.rand(1, inp['channels'], inp['height'], inp['width'], generator=gen)
    mean = torch.tensor(inp['mean'], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(inp['std'], dtype=torch.float32).view(1, -1, 1, 1)
    x = (x - mean) / std
    model = model.eval()
    with torch.inference_mode():
        ref = model(x)
    written, diffs, failed = [], {}, {}
    for fmt in formats:
        path = stem.with_suffix('.' + fmt)
        try:
            if fmt == 'ts':
                scripted = torch.jit.script(model)
                scripted.save(str(path))
                loaded = torch.jit.load(str(path))
                with torch.inference_mode():
                    diffs[fmt] = _check(fmt, ref, loaded(x), atol, rtol)
            elif fmt == 'pt2':
                ep = torch.export.export(model, (x,))
                torch.export.save(ep, str(path))
                loaded = torch.export.load(str(path)).module()
                with torch.inference_mode():
                    diffs[fmt] = _check(fmt, ref, loaded(x), atol, rtol)
            elif fmt == 'onnx':
                import onnxruntime as ort
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore')
                    prog = torch.onnx.export(model, (x,), dynamo=True, input_names=['image'],
                                             output_names=['output'], verbose=False)
                    prog.save(str(path))
                sess = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
                got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
                diffs[fmt] = _check(fmt, ref, torch.from_numpy(np.asarray(got)), atol * 10, rtol * 10)
            else:
                raise ValueError(f'unknown format {fmt!r} (known: {", ".join(FORMATS)})')
            written.append(path)
            log(f'wrote {path} ({path.stat().st_size / 1e6:.2f} MB), max |diff| to eager '
                f'{diffs[fmt]:.2e}')
        except Exception as exc:  # a format that cannot be produced is reported, not shipped
            failed[fmt] = f'{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ""}'
            log(f'warning: {fmt} export failed: {failed[fmt]}')
            for p in (path, Path(str(path) + '.data')):
                if p.exists():
                    p.unlink()
    if not written:
        raise RuntimeError(f'no format could be exported: {failed}')
    # the manifest lists the primary file (out) first
    written.sort(key=lambda p: (p != out, p.suffix))
    manifest = write_manifest(
        written, task=config['task'], arch=config['arch'], input=inp, output=config['output'],
        class_names=config.get('class_names', []), metrics=metrics or {},
        training=training or {}, export_command=export_command, logit_offset=offset,
        zoom_refine=float(zoom_refine), export={'max_abs_diff_to_eager': diffs, 'failed': failed,
                'torch': torch.__version__, 'test_time_augmentation': tta})
    log(f'wrote {manifest}')
    return {'files': [str(p) for p in written], 'manifest': str(manifest),
            'max_abs_diff': diffs, 'failed': failed}


TTA_MODES = ('none', 'd4', 'hflip')


def _check_input_size(model: torch.nn.Module, config: dict, h: int, w: int) -> None:
    """Refuse an export input size the network cannot run at as the manifest would say: it
    must run, and a segmentation network must return its logits at that same size (the report
    U-Net, with four 2x poolings, needs multiples of 16; hazardnet_sp takes any even size).
    Checked by running the network once on a blank input of that size."""
    if h <= 0 or w <= 0:
        raise ValueError(f'input size {h}x{w}: height and width must be positive')
    x = torch.zeros(1, config['input']['channels'], h, w)
    try:
        with torch.inference_mode():
            y = model(x)
    except RuntimeError as exc:
        raise ValueError(f'input size {h}x{w}: the {config["arch"]} network cannot run at it '
                         f'({str(exc).splitlines()[0]})') from None
    if config.get('output') == 'logits_nchw' and tuple(y.shape[-2:]) != (h, w):
        raise ValueError(f'input size {h}x{w}: the {config["arch"]} network returns '
                         f'{y.shape[-2]}x{y.shape[-1]} logits there, not one per input pixel; '
                         'pick a size it keeps (multiples of 16 suit every segmentation arch)')


def export_checkpoint(checkpoint, out, formats=('ts', 'pt2', 'onnx'), export_command=None,
                      log=print, tta: str = 'none', input_hw=None, logit_offset=None,
                      zoom_refine: float = 0.0) -> dict:
    """`tta='d4'` (centroid models): the exported graph averages the network over the 8
    flips/transposes of its input (nets/centroid_net.py D4Averaged); `tta='hflip'`
    (segmentation models): over the frame and its mirror image (nets/hazard_net.py
    HFlipAveraged).  Same input and output as the plain network.  `logit_offset`: see
    export_model (segmentation models; `spacenav calibrate segmentation` chooses it);
    `zoom_refine`: see export_model (centroid models)."""
    if tta not in TTA_MODES:
        raise ValueError(f'unknown test-time augmentation {tta!r} (known: {", ".join(TTA_MODES)})')
    model, config = load_checkpoint_model(checkpoint)
    trained_hw = (config['input']['height'], config['input']['width'])
    if input_hw is not None:   # run a fully convolutional network at another input size
        h, w = (int(v) for v in input_hw)
        _check_input_size(model, config, h, w)
        config = dict(config, input=dict(config['input'], height=h, width=w))
    if tta == 'd4':
        if config.get('output') != 'xy_norm_logit':
            raise ValueError("tta 'd4' applies to centroid models with output xy_norm_logit, "
                             f"not {config.get('task')}/{config.get('output')}")
        from .nets.centroid_net import D4Averaged
        model = D4Averaged(model).eval()
    elif tta == 'hflip':
        if config.get('output') != 'logits_nchw':
            raise ValueError("tta 'hflip' applies to segmentation models with output logits_nchw, "
                             f"not {config.get('task')}/{config.get('output')}")
        from .nets.hazard_net import HFlipAveraged
        model = HFlipAveraged(model).eval()
    metrics = dict(config.get('metrics', {}))
    training = {'command': config.get('command', ''), 'device': config.get('device', ''),
                'seconds': config.get('seconds', 0), 'epochs': config.get('epochs'),
                'batch_size': config.get('batch_size'), 'lr': config.get('lr'),
                'seed': config.get('seed'), 'data': config.get('data'), 'val': config.get('val'),
                'n_train': config.get('n_train'), 'n_val': config.get('n_val'),
                'loss': config.get('loss'), 'checkpoint': str(checkpoint),
                'init': config.get('init')}
    if 'masks' in config:
        training['masks'] = config['masks']
    if input_hw is not None:
        training['input_hw'] = list(trained_hw)   # the metrics above are at this size
    if export_command is None:
        # a library call: say so rather than record the calling program's argv as a command
        export_command = (f'export_checkpoint({str(checkpoint)!r}, {str(out)!r}, '
                          f'formats={list(formats)!r}, tta={tta!r}, input_hw={input_hw!r}, '
                          f'logit_offset={logit_offset!r}, zoom_refine={zoom_refine!r})')
    return export_model(model, config, out, formats, metrics=metrics, training=training,
                        export_command=export_command, log=log, tta=tta,
                        logit_offset=logit_offset, zoom_refine=zoom_refine)
