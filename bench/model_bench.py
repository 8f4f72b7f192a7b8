"""Predictor benchmark: core preprocess + model + postprocess, batch 1, on rendered frames.

For each model (centroid, hazard, thesis), engine (torchscript, export, onnxruntime) and device:
load an InferenceEngine, wrap it in CentroidPredictor / SegmentationPredictor, warm up, then time
N calls of ``predict(frame)`` cycling over the rendered frames. On CUDA, also the model alone
(``engine(x)`` on a device tensor, synchronised) in fp32 and fp16 at batch 1.
For the segmentation model, also its post-processing options (flip averaging, upsampling) on
the fastest engine per device, timed interleaved, with ratios to the cheapest option.
"""
from __future__ import annotations

import gc
import inspect
import time

from .common import log, summarize_ms
from .frames import render_frames
from .models import ENGINES


# (flip_average, upsampling) of the segmentation predictor; the last is the cheapest.
HAZARD_OPTIONS = ((True, 'bilinear'), (False, 'bilinear'), (False, 'nearest'))


def _option_label(flip: bool, upsampling: str) -> str:
    from spacenav_perception.core.class_map import DEFAULT_FLIP_AVERAGE, DEFAULT_UPSAMPLING
    label = ('flip + ' if flip else '') + upsampling
    return label + (' (default)' if (flip, upsampling) == (DEFAULT_FLIP_AVERAGE,
                                                           DEFAULT_UPSAMPLING) else '')


def _predictor_for(ms_task: str, engine, **options):
    if ms_task == 'segmentation':
        from spacenav_perception.core.segmentation_predictor import SegmentationPredictor
        return SegmentationPredictor(engine, **options)
    from spacenav_perception.core.centroid_predictor import CentroidPredictor
    return CentroidPredictor(engine)


def _predict_call(predictor, encoding: str):
    """predict(image) or predict(image, encoding) - whichever the predictor takes."""
    try:
        params = inspect.signature(predictor.predict).parameters
    except (TypeError, ValueError):
        params = {}
    if 'encoding' in params:
        return lambda img: predictor.predict(img, encoding=encoding)
    return predictor.predict


def time_calls(fn, args_cycle, warmup: int, runs: int, sync=None) -> list:
    for i in range(warmup):
        fn(args_cycle[i % len(args_cycle)])
    if sync:
        sync()
    durations = []
    for i in range(runs):
        arg = args_cycle[i % len(args_cycle)]
        t0 = time.perf_counter()
        fn(arg)
        if sync:
            sync()
        durations.append(time.perf_counter() - t0)
    return durations


def bench_predictor(ms, engine_name: str, device: str, frames, encoding: str,
                    warmup: int, runs: int) -> dict:
    from spacenav_perception.core.engine import InferenceEngine
    # precision 'auto' = what the nodes run by default (fp16 with torch on CUDA, else fp32).
    engine = InferenceEngine(ms.files[engine_name], device=device, precision='auto',
                             strict_device=True, expected_task=ms.task, warmup=True)
    predictor = _predictor_for(ms.task, engine)
    call = _predict_call(predictor, encoding)
    sync = None
    if engine.device.startswith('cuda'):
        import torch
        sync = torch.cuda.synchronize
    durations = time_calls(call, frames, warmup, runs, sync)
    spec = engine.manifest.input
    row = {'model': ms.name, 'engine': engine.engine, 'device': engine.device,
           'precision': engine.precision, 'batch': 1, 'scope': 'predictor',
           'source': ms.sources[engine_name], 'arch': engine.manifest.arch,
           'input': f'{spec.channels}x{spec.height}x{spec.width}',
           'frame': f'{frames[0].shape[1]}x{frames[0].shape[0]} {encoding}'}
    row.update(summarize_ms(durations))
    del predictor, engine
    gc.collect()
    return row


def bench_hazard_options(ms, engine_name: str, device: str, frames, encoding: str,
                         warmup: int, runs: int) -> list:
    """SegmentationPredictor with each of HAZARD_OPTIONS on one engine. The options are timed
    interleaved (call i of every option on the same frame before call i + 1), so a busy
    machine slows them alike; ratio = p50 / p50 of the cheapest option (the last)."""
    from spacenav_perception.core.engine import InferenceEngine
    engine = InferenceEngine(ms.files[engine_name], device=device, precision='auto',
                             strict_device=True, expected_task=ms.task, warmup=True)
    calls = [_predict_call(_predictor_for(ms.task, engine, flip_average=flip,
                                          upsampling=upsampling), encoding)
             for flip, upsampling in HAZARD_OPTIONS]
    sync = None
    if engine.device.startswith('cuda'):
        import torch
        sync = torch.cuda.synchronize
    durations = [[] for _ in calls]
    for i in range(warmup + runs):
        frame = frames[i % len(frames)]
        for call, out in zip(calls, durations):
            t0 = time.perf_counter()
            call(frame)
            if sync:
                sync()
            if i >= warmup:
                out.append(time.perf_counter() - t0)
    rows = []
    for (flip, upsampling), times in zip(HAZARD_OPTIONS, durations):
        row = {'model': ms.name, 'engine': engine.engine, 'device': engine.device,
               'precision': engine.precision, 'batch': 1, 'scope': 'predictor option',
               'source': ms.sources[engine_name], 'option': _option_label(flip, upsampling),
               'flip_average': flip,
               'upsampling': upsampling}
        row.update(summarize_ms(times))
        rows.append(row)
    for row in rows:
        row['ratio'] = round(row['p50_ms'] / rows[-1]['p50_ms'], 3)
    del calls, engine
    gc.collect()
    return rows


def bench_model_only(ms, engine_name: str, device: str, precision: str,
                     warmup: int, runs: int) -> dict:
    """Model alone (no pre/post-processing) at batch 1 on `device` in `precision` (CUDA)."""
    import torch
    from spacenav_perception.core.engine import InferenceEngine
    engine = InferenceEngine(ms.files[engine_name], device=device, precision=precision,
                             strict_device=True, expected_task=ms.task, warmup=True)
    x = torch.rand(engine.input_shape, device=engine.device)
    sync = torch.cuda.synchronize if engine.device.startswith('cuda') else None
    durations = time_calls(engine, [x], warmup, runs, sync)
    row = {'model': ms.name, 'engine': engine.engine, 'device': engine.device,
           'precision': engine.precision, 'batch': 1, 'scope': 'model',
           'source': ms.sources[engine_name], 'arch': engine.manifest.arch}
    row.update(summarize_ms(durations))
    del engine
    gc.collect()
    return row


def load_frames(kinds, frame_count: int) -> tuple[dict, dict]:
    """kind -> (list of arrays, encoding), and kind -> description for the results."""
    frames, info = {}, {}
    for kind in sorted(set(kinds)):
        imgs, enc, source = render_frames(kind, frame_count)
        frames[kind] = (imgs, enc)
        info[kind] = {'source': source, 'count': len(imgs), 'encoding': enc,
                      'width': int(imgs[0].shape[1]), 'height': int(imgs[0].shape[0])}
    return frames, info


def run_model_bench(model_sets: dict, devices, warmup: int, runs: int, frames: dict,
                    progress=None) -> tuple[list, list]:
    """-> (rows, errors); frames from load_frames."""
    rows, errors = [], []
    for device in devices:
        for name, ms in model_sets.items():
            imgs, enc = frames[ms.frames]
            for engine_name in ENGINES:
                if engine_name not in ms.files:
                    continue
                label = f'{name}/{engine_name}/{device}'
                try:
                    rows.append(bench_predictor(ms, engine_name, device, imgs, enc,
                                                warmup, runs))
                except Exception as exc:  # one broken format must not hide the others
                    errors.append(f'{label}: {type(exc).__name__}: {exc}')
                    log(f'[bench] {label} failed: {type(exc).__name__}: {exc}')
                if progress:
                    progress(label)
                if device.startswith('cuda') and name in ('centroid', 'hazard'):
                    for precision in ('fp32', 'fp16'):
                        if engine_name == 'onnxruntime' and precision == 'fp16':
                            continue   # the engine serves ONNX in fp32 only
                        try:
                            rows.append(bench_model_only(ms, engine_name, device, precision,
                                                         warmup, runs))
                        except Exception as exc:
                            errors.append(f'{label}/{precision} model-only: '
                                          f'{type(exc).__name__}: {exc}')
            if ms.task == 'segmentation':
                timed = [r for r in rows if r.get('scope') == 'predictor' and
                         r['model'] == ms.name and r['engine'] in ms.files and
                         r['device'].split(':')[0] == device.split(':')[0]]
                if timed:
                    engine_name = min(timed, key=lambda r: r['p50_ms'])['engine']
                    try:
                        rows += bench_hazard_options(ms, engine_name, device, imgs, enc,
                                                     warmup, runs)
                    except Exception as exc:
                        errors.append(f'{name}/{engine_name}/{device} options: '
                                      f'{type(exc).__name__}: {exc}')
                    if progress:
                        progress(f'{name}/{engine_name}/{device} options')
    return rows, errors


def fastest_engines(rows) -> dict:
    """{model: {device: engine}} by predictor p50 (what an engine 'auto' should pick)."""
    best = {}
    for r in rows:
        if r.get('scope') != 'predictor':
            continue
        cur = best.setdefault(r['model'], {}).get(r['device'])
        if cur is None or r['p50_ms'] < cur['p50_ms']:
            best[r['model']][r['device']] = r
    return {m: {d: r['engine'] for d, r in per.items()} for m, per in best.items()}
