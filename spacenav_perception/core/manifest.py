"""Model manifests: the JSON beside each model file, its sha256 check, read and write.

The manifest of `models/NAME.EXT` is `models/NAME.json`, one manifest for every exported format
of that model (see DEVELOPERS.md for the schema). `load_manifest` verifies, in this order, that
the model file exists, the manifest exists and parses, the file's sha256 is listed and equal,
the task is the expected one and the input / output convention is one the runtime serves; any
failure raises `ModelIntegrityError` with ONE message naming the path and the command that fixes
it (the manifest's `export_command` when it has one). ROS-free.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

TASKS = ('centroid', 'segmentation')
OUTPUTS_BY_TASK = {
    'centroid': ('xy_norm_logit', 'xy_input_px'),
    'segmentation': ('logits_nchw',),
}
RESIZE_MODES = ('area', 'bilinear', 'nearest')
COLOR_MODES = ('rgb', 'luma')   # what a 3-channel model is fed: the colours, or BT.601 luma x 3
MODEL_SUFFIXES = ('.ts', '.pt', '.pt2', '.onnx')


class ModelIntegrityError(RuntimeError):
    """A model file / manifest that must not be used. The message says what to do."""


@dataclass
class InputSpec:
    height: int
    width: int
    channels: int = 1
    resize: str = 'area'
    mean: list = field(default_factory=lambda: [0.0])
    std: list = field(default_factory=lambda: [1.0])
    color: str = 'rgb'   # 'luma': colour frames are reduced to luma, replicated to the channels

    def per_channel(self, values) -> list:
        """mean/std expanded to one value per channel (a single value is broadcast)."""
        values = list(values)
        return values * self.channels if len(values) == 1 else values


@dataclass
class ModelManifest:
    name: str
    task: str
    arch: str
    input: InputSpec
    output: str
    class_names: list = field(default_factory=list)
    files: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    export_command: str | None = None
    # segmentation: per-class numbers added to the model's (mean) logits before the argmax,
    # chosen on validation data (spacenav calibrate segmentation); empty = none
    logit_offset: list = field(default_factory=list)
    # centroid: side of the second pass's crop as a multiple of the lit body's extent, chosen on
    # validation data (core/zoom_refine.py); 0 = one pass over the whole frame
    zoom_refine: float = 0.0
    extra: dict = field(default_factory=dict)   # unknown keys, kept on rewrite
    path: Path | None = None                    # where it was read from (not serialised)

    @classmethod
    def from_dict(cls, data: dict, path: Path | None = None) -> 'ModelManifest':
        known = {f.name for f in dataclasses.fields(cls)} - {'extra', 'path'}
        inp = data['input']
        spec = InputSpec(**{k: inp[k] for k in ('height', 'width', 'channels', 'resize',
                                                 'mean', 'std', 'color') if k in inp})
        kwargs = {k: data[k] for k in known if k in data and k != 'input'}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(input=spec, extra=extra, path=path, **kwargs)

    def to_dict(self) -> dict:
        out = {'name': self.name, 'task': self.task, 'arch': self.arch,
               'input': dataclasses.asdict(self.input), 'output': self.output,
               'class_names': list(self.class_names), 'files': dict(self.files),
               'metrics': dict(self.metrics), 'training': dict(self.training)}
        if self.export_command:
            out['export_command'] = self.export_command
        if self.logit_offset:
            out['logit_offset'] = list(self.logit_offset)
        if self.zoom_refine:
            out['zoom_refine'] = float(self.zoom_refine)
        out.update(self.extra)
        return out


def sha256_file(path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_path_for(model_path) -> Path:
    """models/NAME.EXT -> models/NAME.json"""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + '.json')


def fix_command(model_path, manifest: ModelManifest | dict | None = None) -> str:
    """The command that regenerates `model_path` and its manifest."""
    command = None
    if isinstance(manifest, ModelManifest):
        command = manifest.export_command
    elif isinstance(manifest, dict):
        command = manifest.get('export_command')
    return command or f'spacenav export --checkpoint CKPT --out {Path(model_path)}'


def _fail(model_path, problem: str, manifest=None) -> ModelIntegrityError:
    return ModelIntegrityError(
        f'model {Path(model_path)}: {problem}. Re-export it with: '
        f'{fix_command(model_path, manifest)}')


def _servable_problem(m: ModelManifest) -> str | None:
    if m.task not in TASKS:
        return f'task {m.task!r} is unknown (known: {", ".join(TASKS)})'
    if m.output not in OUTPUTS_BY_TASK[m.task]:
        return (f'output convention {m.output!r} cannot serve task {m.task!r} '
                f'(supported: {", ".join(OUTPUTS_BY_TASK[m.task])})')
    spec = m.input
    for name in ('height', 'width'):
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            return f'input {name} {value!r} is not a positive whole number'
    if spec.channels not in (1, 3):
        return f'input has {spec.channels!r} channels; the runtime serves 1 (mono) or 3 (RGB)'
    if spec.resize not in RESIZE_MODES:
        return f'input resize {spec.resize!r} is unknown (known: {", ".join(RESIZE_MODES)})'
    if spec.color not in COLOR_MODES:
        return f'input color {spec.color!r} is unknown (known: {", ".join(COLOR_MODES)})'
    for name in ('mean', 'std'):
        values = getattr(spec, name)
        if not isinstance(values, (list, tuple)) or len(values) not in (1, spec.channels) or \
                not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            return (f'input {name} {values!r} must be 1 or {spec.channels} finite number(s)')
    if any(v == 0 for v in spec.std):
        return f'input std {spec.std!r} contains zero'
    if m.task == 'segmentation' and m.class_names and len(m.class_names) < 2:
        return f'segmentation model lists {len(m.class_names)} class name(s); needs at least 2'
    return (logit_offset_problem(m.logit_offset, m.task, len(m.class_names))
            or zoom_refine_problem(m.zoom_refine, m.task))


ZOOM_REFINE_RANGE = (1.2, 8.0)


def zoom_refine_problem(value, task: str = 'centroid') -> str | None:
    """Why `value` cannot be a zoom_refine (None when it can): 0 (off), or for a centroid model
    a crop side of ZOOM_REFINE_RANGE times the lit extent (a smaller crop would cut the body)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f'zoom_refine {value!r} is not a finite number'
    if value == 0:
        return None
    if task != 'centroid':
        return f'zoom_refine is for centroid models, not {task!r}'
    lo, hi = ZOOM_REFINE_RANGE
    if not lo <= value <= hi:
        return f'zoom_refine {value!r} must be 0 (off) or in [{lo}, {hi}]'
    return None


def logit_offset_problem(offset, task: str, n_classes: int) -> str | None:
    """Why `offset` cannot be a manifest's logit_offset (None when it can): a segmentation
    model's list of one finite number per class (empty = no offset)."""
    if not isinstance(offset, (list, tuple)):
        return f'logit_offset {offset!r} is not a list'
    if not offset:
        return None
    if task != 'segmentation':
        return f'logit_offset is for segmentation models, not {task!r}'
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               for v in offset):
        return f'logit_offset {list(offset)!r} must hold finite numbers'
    if n_classes and len(offset) != n_classes:
        return (f'logit_offset has {len(offset)} value(s) for {n_classes} classes '
                '(one per class)')
    return None


def load_manifest(model_path, expected_task: str | None = None, *,
                  verify_hash: bool = True) -> ModelManifest:
    """Read and verify the manifest of `model_path`; raises ModelIntegrityError."""
    model_path = Path(model_path)
    mpath = manifest_path_for(model_path)
    if not model_path.is_file():
        raise _fail(model_path, 'model file does not exist', _peek(mpath))
    if not mpath.is_file():
        raise _fail(model_path, f'manifest {mpath} is missing (every model needs the JSON '
                    'manifest written by export beside it)')
    try:
        data = json.loads(mpath.read_text(encoding='utf-8'))
        if not isinstance(data, dict):
            raise ValueError('top level is not a JSON object')
        manifest = ModelManifest.from_dict(data, path=mpath)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise _fail(model_path, f'manifest {mpath} is unreadable or corrupt '
                    f'({type(exc).__name__}: {exc})') from None
    if verify_hash:
        listed = manifest.files.get(model_path.name)
        if listed is None:
            raise _fail(model_path, f'manifest {mpath} does not list {model_path.name} '
                        f'(lists: {", ".join(manifest.files) or "nothing"})', manifest)
        actual = sha256_file(model_path)
        if actual != listed:
            raise _fail(model_path, f'sha256 {actual} differs from {listed} in {mpath} '
                        '(the file changed or is corrupt)', manifest)
    if expected_task is not None and manifest.task != expected_task:
        raise _fail(model_path, f'it is a {manifest.task!r} model but a {expected_task!r} '
                    'model is needed here', manifest)
    problem = _servable_problem(manifest)
    if problem:
        raise _fail(model_path, f'manifest {mpath}: {problem}', manifest)
    return manifest


def peek_manifest(model_path) -> dict | None:
    """The raw manifest dict of `model_path` WITHOUT any verification (None if unreadable).

    Only for choosing among a model's exported files or finding its export command; anything
    that is then loaded goes through load_manifest."""
    return _peek(manifest_path_for(model_path))


def _peek(mpath: Path) -> dict | None:
    try:
        data = json.loads(mpath.read_text(encoding='utf-8'))
        return data if isinstance(data, dict) else None
    except Exception:  # the manifest is only consulted for its export command
        return None


def write_manifest(model_paths: Path | str | Iterable, **fields: Any) -> Path:
    """Write NAME.json beside the model file(s) (same stem) with their sha256s; returns its path.

    `fields` are the manifest keys (task, arch, input, output, class_names, metrics, training,
    export_command, ...); `name` defaults to the stem, `files` is computed here. `input` may be
    an InputSpec or a dict.
    """
    if isinstance(model_paths, (str, Path)):
        model_paths = [model_paths]
    paths = [Path(p) for p in model_paths]
    if not paths:
        raise ValueError('write_manifest needs at least one model path')
    mpath = manifest_path_for(paths[0])
    for p in paths:
        if manifest_path_for(p) != mpath:
            raise ValueError(f'{p} does not share the manifest {mpath} (different folder or stem)')
    data = dict(fields)
    if isinstance(data.get('input'), InputSpec):
        data['input'] = dataclasses.asdict(data['input'])
    data.setdefault('name', paths[0].stem)
    data['files'] = {p.name: sha256_file(p) for p in paths}
    manifest = ModelManifest.from_dict(data)
    tmp = mpath.with_name(mpath.name + '.tmp')
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + '\n',
                   encoding='utf-8')
    tmp.replace(mpath)
    return mpath
