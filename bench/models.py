"""Which model files the benchmark measures.

Per model name (centroid, hazard, thesis) and engine (torchscript .ts, export .pt2,
onnxruntime .onnx):
1. the shipped file ``models/NAME.EXT`` (``paths.packaged_model_path``) when it and its manifest
   exist (or NAME.EXT in ``--models-dir``);
2. otherwise an export of the *untrained* network of the same architecture (same speed) made by
   ``spacenav_perception.export`` into a cache folder keyed by the sources of the networks, the
   exporter and the torch version (so repeated runs do not re-export);
3. if the exporter is not available, the analytic reference model of ``nets/reference.py``
   (runs, but its speed says nothing about the real networks: labelled ``source: reference``).
Every entry of the results names its ``source`` so numbers are never mistaken for the shipped
model's.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .common import log

ENGINES = {'torchscript': '.ts', 'export': '.pt2', 'onnxruntime': '.onnx'}
FORMAT_OF_ENGINE = {'torchscript': 'ts', 'export': 'pt2', 'onnxruntime': 'onnx'}
# model name -> (task, reference kind, default input (height, width), frame kind)
MODELS = {
    'centroid': ('centroid', 'centroid', (256, 256), 'asteroid'),
    'hazard': ('segmentation', 'segmentation', (256, 384), 'lunar'),
    'thesis': ('centroid', 'centroid_px', (128, 128), 'asteroid'),
}


@dataclass
class ModelSet:
    name: str
    task: str
    frames: str                                   # 'asteroid' | 'lunar'
    files: dict = field(default_factory=dict)     # engine -> Path
    sources: dict = field(default_factory=dict)   # engine -> 'shipped' | 'untrained' | 'reference'
    problems: list = field(default_factory=list)


def cache_root() -> Path:
    base = os.environ.get('XDG_CACHE_HOME') or str(Path.home() / '.cache')
    return Path(base) / 'spacenav_perception' / 'bench_models'


def _sources_key() -> str:
    """Hash of what determines an untrained export: net + export sources, torch version."""
    import torch
    import spacenav_perception
    pkg = Path(spacenav_perception.__file__).resolve().parent
    digest = hashlib.sha256(torch.__version__.encode())
    for rel in ('nets/centroid_net.py', 'nets/hazard_net.py', 'nets/thesis_cnn.py',
                'nets/reference.py', 'export.py', 'training/centroid_task.py',
                'training/segmentation_task.py'):
        p = pkg / rel
        digest.update(rel.encode())
        digest.update(p.read_bytes() if p.is_file() else b'-')
    return digest.hexdigest()[:16]


def _shipped(name: str, models_dir: Path | None) -> dict:
    from spacenav_perception.paths import packaged_model_path
    found = {}
    for engine, suffix in ENGINES.items():
        path = (models_dir / f'{name}{suffix}') if models_dir else \
            packaged_model_path(name, suffix)
        if path.is_file() and path.with_suffix('.json').is_file():
            found[engine] = path
    return found


def _untrained_config(name: str, like: dict | None = None) -> tuple:
    """(untrained model, export config) for a benchmark model name, from the training tasks.

    `like`: the manifest of a shipped file of that model: same arch and input (so the formats
    that are not shipped are measured on the same network)."""
    if like and like.get('arch') and like.get('input'):
        from spacenav_perception.export import build_from_config
        config = {k: like[k] for k in ('task', 'arch', 'input', 'output') if k in like}
        config['class_names'] = like.get('class_names', [])
        return build_from_config(config), config
    if name in ('centroid', 'thesis'):
        from spacenav_perception.training import centroid_task as task
        arch = 'thesis' if name == 'thesis' else 'centroidnet'
        size = task.arch_defaults(arch)['input_size']
        config = {'task': 'centroid', 'arch': arch,
                  'input': {'height': size, 'width': size, 'channels': 1, 'resize': 'area',
                            'mean': [0.0], 'std': [1.0]},
                  'output': 'xy_input_px' if arch == 'thesis' else 'xy_norm_logit',
                  'class_names': []}
        return task.build_model(arch, size), config
    from spacenav_perception.training import segmentation_task as task
    h, w = task.arch_defaults(task.DEFAULT_ARCH)['input_hw']
    config = {'task': 'segmentation', 'arch': task.DEFAULT_ARCH,
              'input': {'height': h, 'width': w, 'channels': 3, 'resize': 'area',
                        'mean': list(task.MEAN), 'std': list(task.STD)},
              'output': 'logits_nchw', 'class_names': list(task.CLASS_NAMES)}
    return task.build_model(task.DEFAULT_ARCH), config


def _export_untrained(name: str, out_dir: Path, engines, like=None) -> tuple[dict, str]:
    """Export the untrained network `name` in the formats of `engines`; (files, source).

    Through spacenav_perception.export.export_model (the project's exporter, which verifies
    every format); the analytic reference model when the exporter / nets are not available."""
    formats = tuple(FORMAT_OF_ENGINE[e] for e in engines)
    out = out_dir / f'{name}.ts'
    try:
        import torch
        from spacenav_perception.export import export_model
        torch.manual_seed(0)
        model, config = _untrained_config(name, like)
        export_model(model, config, out, formats=formats,
                     training={'command': 'untrained (benchmark only)', 'device': 'none',
                               'seconds': 0},
                     export_command='spacenav bench --refresh-models',
                     log=lambda msg: None)
        source = 'untrained'
    except ImportError as exc:
        log(f'[bench] exporter unavailable ({exc}); using the analytic reference model for '
            f'{name} (its speed is NOT the real network\'s)')
        _, ref_kind, (h, w), _ = MODELS[name]
        from spacenav_perception.nets.reference import export_reference_model
        export_reference_model(ref_kind, out_dir, h, w, formats=formats, name=name)
        source = 'reference'
    files = {e: out.with_suffix(ENGINES[e]) for e in engines}
    return {e: p for e, p in files.items() if p.is_file()}, source


def resolve_models(names, engines=tuple(ENGINES), models_dir: Path | None = None,
                   refresh: bool = False) -> dict:
    """name -> ModelSet with one file per available engine (see module docstring)."""
    out = {}
    key = None
    for name in names:
        task, _, _, frames = MODELS[name]
        ms = ModelSet(name=name, task=task, frames=frames)
        shipped = _shipped(name, models_dir)
        for engine in engines:
            if engine in shipped:
                ms.files[engine] = shipped[engine]
                ms.sources[engine] = 'shipped'
        missing = [e for e in engines if e not in ms.files]
        if missing:
            key = key or _sources_key()
            like = None
            if shipped:   # fill the missing formats with the shipped network's architecture
                import json
                like = json.loads(next(iter(shipped.values())).with_suffix('.json').read_text())
            arch = (like or {}).get('arch', 'default')
            size = (like or {}).get('input') or {}
            # the cached stand-in must match the shipped network's architecture AND input size
            # (a model retrained at another resolution would otherwise be timed at the old one)
            folder = cache_root() / key / (f'{name}-{arch}-{size["height"]}x{size["width"]}'
                                           if size.get('height') and size.get('width')
                                           else f'{name}-{arch}')
            marker = folder / 'SOURCE'
            if refresh and folder.exists():
                shutil.rmtree(folder)
            files = {e: folder / f'{name}{ENGINES[e]}' for e in missing}
            if marker.is_file() and all(p.is_file() for p in files.values()):
                source = marker.read_text().strip()
            else:
                log(f'[bench] exporting untrained {name} ({", ".join(missing)}) into {folder} '
                    '(cached for later runs)')
                folder.mkdir(parents=True, exist_ok=True)
                try:
                    files, source = _export_untrained(name, folder, missing, like)
                    marker.write_text(source + '\n')
                except Exception as exc:  # a format that does not export: say so, go on
                    ms.problems.append(f'export of {name} failed: {type(exc).__name__}: {exc}')
                    files, source = {}, 'none'
            for engine, path in files.items():
                if path.is_file():
                    ms.files[engine] = path
                    ms.sources[engine] = source
        for engine in engines:
            if engine not in ms.files:
                ms.problems.append(f'{name}: no {ENGINES[engine]} file')
        out[name] = ms
    return out
