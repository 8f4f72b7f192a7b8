"""InferenceEngine: one model file (TorchScript, torch.export .pt2 or ONNX) behind one call.

    engine = InferenceEngine('models/centroid.ts', device='auto', precision='fp32')
    y = engine(x)          # x: NCHW float32 tensor; y: float32 tensor on engine.device

- The manifest is verified (`load_manifest`: exists, sha256, task, servable input) BEFORE the
  model file is deserialised; a file that then fails to load raises ModelIntegrityError.
- Format by suffix: `.ts`/`.pt` TorchScript (torch.jit.load), `.pt2` torch.export
  (torch.export.load(...).module()), `.onnx` ONNX Runtime (CPU provider; CUDA provider first
  when the device is CUDA and onnxruntime-gpu offers it).
- engine: which exported sibling of `model_path` to load. The formats of one model share
  models/NAME.json and sit beside each other (NAME.ts, NAME.pt2, NAME.onnx; each listed with its
  sha256 in the manifest's `files`).
    None           the file given, by its suffix (the default of this class)
    'torchscript' | 'export' | 'onnxruntime'
                   that format's sibling (models/centroid.ts + 'onnxruntime' loads
                   models/centroid.onnx); missing -> ModelIntegrityError saying how to export it
    'auto'         the first of ENGINE_PREFERENCE[device type] whose file is present, listed in
                   the manifest and verifies, skipping onnxruntime when it is not installed;
                   none -> the file given (the nodes' default)
  `self.engine` / `self.model_path` say what was chosen (the nodes report both on /diagnostics).
- device: 'auto' (CUDA when torch sees one, else CPU), 'cpu', 'cuda' / 'cuda:N'. 'cuda' without a
  GPU logs one warning and runs on CPU, or raises DeviceUnavailableError with strict_device=True.
- precision: 'fp32' | 'fp16' | 'bf16' | 'auto' (fp16 on CUDA, fp32 on CPU). Half precision is
  only used on CUDA with the torch engines; elsewhere a request logs a warning and uses fp32.
  Outputs are always float32.
- num_threads: 0 (default) leaves torch's and ONNX Runtime's intra-op thread counts at the
  library defaults (one per core). N > 0 calls torch.set_num_threads(N) - PROCESS-WIDE: it applies
  to every torch op in the process, other engines included - and sets the ONNX Runtime session's
  intra_op_num_threads to N. On a small or busy CPU 1 is much faster than the default
  (bench/RESULTS.md, "Engine choice and threads"): torch's spinning worker threads collapse when
  the cores are shared with another process.
- memory format: on the CPU the torch engines run in channels_last (model and input), measured
  faster for the project's conv nets (bench/RESULTS.md); CUDA keeps the exported format.
ROS-free.
"""
from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .manifest import (ModelIntegrityError, ModelManifest, fix_command, load_manifest,
                       peek_manifest)

_LOG = logging.getLogger(__name__)
PRECISIONS = ('fp32', 'fp16', 'bf16', 'auto')
_DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}
ENGINES = ('auto', 'torchscript', 'export', 'onnxruntime')
ENGINE_OF_SUFFIX = {'.ts': 'torchscript', '.pt': 'torchscript', '.pt2': 'export',
                    '.onnx': 'onnxruntime'}
SUFFIX_OF_ENGINE = {'torchscript': '.ts', 'export': '.pt2', 'onnxruntime': '.onnx'}
# engine='auto': the order in which the exported formats are tried, per device type. THE ONE
# PLACE this choice is made; the measurements behind it are in bench/RESULTS.md ("Engine choice
# and threads"). CPU: ONNX Runtime was fastest for the hazard net, equal or faster for the
# centroid net, and stays stable when the cores are shared; of the torch engines TorchScript
# (channels_last) was the faster. CUDA: the torch engines run fp16 (precision auto) while ONNX
# Runtime here runs fp32 only, so torch first.
ENGINE_PREFERENCE = {
    'cpu': ('onnxruntime', 'torchscript', 'export'),
    'cuda': ('torchscript', 'export', 'onnxruntime'),
}


class DeviceUnavailableError(RuntimeError):
    """The requested device is not available and strict_device=True."""


def resolve_device(device: str, *, strict: bool = False,
                   warn: Callable[[str], None] | None = None) -> str:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> the device string to use ('cpu' or 'cuda[:N]')."""
    warn = warn or _LOG.warning
    if not isinstance(device, str):
        raise ValueError(f'device {device!r} is not a string; use auto, cpu or cuda')
    name = device.strip().lower()
    if name == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if name == 'cpu':
        return 'cpu'
    if name == 'cuda' or (name.startswith('cuda:') and name[5:].isdigit()):
        index = int(name[5:]) if ':' in name else 0
        if torch.cuda.is_available() and index < torch.cuda.device_count():
            return name
        message = (f'device {device!r} requested but no such CUDA device is available '
                   f'(torch.cuda.is_available() = {torch.cuda.is_available()})')
        if strict:
            raise DeviceUnavailableError(message)
        warn(message + '; running on CPU instead')
        return 'cpu'
    raise ValueError(f'unknown device {device!r}; use auto, cpu, cuda or cuda:N')


def resolve_precision(precision: str, device: str, engine: str,
                      warn: Callable[[str], None] | None = None) -> str:
    warn = warn or _LOG.warning
    if precision not in PRECISIONS:
        raise ValueError(f'unknown precision {precision!r}; use one of {", ".join(PRECISIONS)}')
    on_cuda = device.startswith('cuda')
    if precision == 'auto':
        return 'fp16' if (on_cuda and engine != 'onnxruntime') else 'fp32'
    if precision != 'fp32' and (not on_cuda or engine == 'onnxruntime'):
        where = 'the CPU' if not on_cuda else 'ONNX Runtime'
        warn(f'precision {precision} is not used on {where}; running in fp32')
        return 'fp32'
    return precision


def onnxruntime_available() -> bool:
    return importlib.util.find_spec('onnxruntime') is not None


def engine_of(model_path) -> str:
    """'torchscript' | 'export' | 'onnxruntime' by suffix; ModelIntegrityError otherwise."""
    model_path = Path(model_path)
    suffix = model_path.suffix.lower()
    if suffix not in ENGINE_OF_SUFFIX:
        raise ModelIntegrityError(
            f'model {model_path}: suffix {suffix!r} is not a model format this runtime '
            f'loads (.ts, .pt, .pt2, .onnx). Re-export it with: {fix_command(model_path)}')
    return ENGINE_OF_SUFFIX[suffix]


def _sibling(model_path: Path, engine: str) -> Path:
    """The file of `engine`'s format beside `model_path` (the given file when it is one)."""
    if engine_of(model_path) == engine:
        return model_path
    return model_path.with_suffix(SUFFIX_OF_ENGINE[engine])


def engine_candidates(model_path, engine: str | None, device: str) -> list:
    """[(file, engine name), ...] to try in order for `engine` (see the module docstring).

    Explicit engines give one candidate (ModelIntegrityError when its file is missing); 'auto'
    gives the present, manifest-listed formats in ENGINE_PREFERENCE order, then the given file.
    ValueError for an unknown engine name.
    """
    model_path = Path(model_path)
    given_engine = engine_of(model_path)
    if engine is None or engine == '':
        return [(model_path, given_engine)]
    name = engine.strip().lower() if isinstance(engine, str) else None
    if name not in ENGINES:
        raise ValueError(f'unknown engine {engine!r}; use one of {", ".join(ENGINES)}')
    if name != 'auto':
        path = _sibling(model_path, name)
        if path != model_path and not path.is_file():
            manifest = peek_manifest(model_path)
            raise ModelIntegrityError(
                f'model {path}: engine {name!r} needs {path.name} beside {model_path.name}, '
                f'which does not exist. Export that format with: '
                f'{fix_command(path, manifest)} (or use engine auto, or the format of '
                f'{model_path.name}: engine {given_engine!r})')
        return [(path, name)]
    files = (peek_manifest(model_path) or {}).get('files')
    listed = set(files) if isinstance(files, dict) else set()
    kind = 'cuda' if device.startswith('cuda') else 'cpu'
    out = []
    for name in ENGINE_PREFERENCE[kind]:
        path = _sibling(model_path, name)
        if not path.is_file() or path.name not in listed:
            continue
        if name == 'onnxruntime' and not onnxruntime_available():
            continue
        out.append((path, name))
    if (model_path, given_engine) not in out:
        out.append((model_path, given_engine))   # its own error when it cannot be used either
    return out


def set_threads(num_threads: int) -> None:
    """torch.set_num_threads(num_threads) when > 0 (process-wide); 0 keeps the default."""
    if not isinstance(num_threads, int) or isinstance(num_threads, bool) or num_threads < 0:
        raise ValueError(f'num_threads {num_threads!r} must be a whole number >= 0 '
                         '(0 = library default)')
    if num_threads > 0 and torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)


class InferenceEngine:
    """A verified model on a device. Call it with an NCHW float32 tensor."""

    def __init__(self, model_path, *, device: str = 'auto', precision: str = 'fp32',
                 strict_device: bool = False, expected_task: str | None = None,
                 warmup: bool = True, log: Callable[[str], None] | None = None,
                 engine: str | None = None, num_threads: int = 0):
        self.requested_path = Path(model_path)
        self.requested_engine = engine or None
        self._warn = log or _LOG.warning
        set_threads(num_threads)
        self.num_threads = num_threads
        self.device = resolve_device(device, strict=strict_device, warn=self._warn)
        candidates = engine_candidates(self.requested_path, engine, self.device)
        for index, (path, name) in enumerate(candidates):
            try:
                manifest = load_manifest(path, expected_task)
            except ModelIntegrityError as exc:
                if index == len(candidates) - 1:
                    raise
                self._warn(f'engine auto: skipping {path} ({exc})')
                continue
            break
        self.model_path, self.engine = path, name
        self.manifest: ModelManifest = manifest
        self.sha256 = self.manifest.files[self.model_path.name]
        self.precision = resolve_precision(precision, self.device, self.engine, self._warn)
        self._dtype = _DTYPES[self.precision]
        self._torch_device = torch.device(self.device)
        self._session = None
        self._module = None
        # channels_last: measured faster on the CPU for the conv nets (bench/RESULTS.md).
        self._memory_format = (torch.channels_last if self.engine != 'onnxruntime' and
                               self._torch_device.type == 'cpu' else None)
        try:
            self._load()
        except ModelIntegrityError:
            raise
        except Exception as exc:  # deserialisation of a damaged / foreign file
            raise ModelIntegrityError(
                f'model {self.model_path} could not be loaded as {self.engine} '
                f'({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ""}). '
                f'Re-export it with: {fix_command(self.model_path, self.manifest)}') from exc
        spec = self.manifest.input
        self.input_shape = (1, spec.channels, spec.height, spec.width)
        zeros = torch.zeros(self.input_shape, dtype=torch.float32, device=self._torch_device)
        if self._memory_format is not None:
            try:   # a model with layout-bound ops (x.view on the features) cannot run it
                self(zeros)
            except Exception as exc:  # noqa: BLE001 - then it runs in the exported layout
                _LOG.info('%s does not run in channels_last (%s); using NCHW', self.model_path,
                          exc)
                self._memory_format = None
                self._load()
        if warmup:
            self(zeros)

    # ------------------------------------------------------------------ loading
    def _load(self) -> None:
        path = str(self.model_path)
        if self.engine == 'torchscript':
            with warnings.catch_warnings():   # TorchScript is a supported format here
                warnings.filterwarnings('ignore', r'.*torch\.jit.*deprecated',
                                        DeprecationWarning)
                module = torch.jit.load(path, map_location=self._torch_device)
            module.eval()
            self._module = self._place(module)
        elif self.engine == 'export':
            module = torch.export.load(path).module()
            self._module = self._place(module.to(self._torch_device))
        else:
            try:
                import onnxruntime as ort
            except ImportError as exc:
                raise ModelIntegrityError(
                    f'model {self.model_path} is ONNX but onnxruntime is not installed; install '
                    'onnxruntime (or onnxruntime-gpu) or use the .ts model beside it') from exc
            providers = ['CPUExecutionProvider']
            if self.device.startswith('cuda'):
                if 'CUDAExecutionProvider' in ort.get_available_providers():
                    index = int(self.device.split(':')[1]) if ':' in self.device else 0
                    providers.insert(0, ('CUDAExecutionProvider', {'device_id': index}))
                else:
                    self._warn('onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu);'
                               ' ONNX inference runs on the CPU, outputs are moved to '
                               f'{self.device}')
            options = ort.SessionOptions()
            options.log_severity_level = 3
            if self.num_threads > 0:
                options.intra_op_num_threads = self.num_threads
            self._session = ort.InferenceSession(path, sess_options=options, providers=providers)
            self._input_name = self._session.get_inputs()[0].name

    def _place(self, module):
        if self._dtype != torch.float32:
            module = module.to(self._dtype)
        if self._memory_format is not None:
            module = module.to(memory_format=self._memory_format)
        return module

    # ------------------------------------------------------------------ running
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if self._session is not None:
                feed = x.detach().to('cpu', torch.float32).contiguous().numpy()
                out = self._session.run(None, {self._input_name: feed})[0]
                return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(
                    self._torch_device)
            x = x.to(self._torch_device, self._dtype, non_blocking=True)
            if self._memory_format is not None and x.dim() == 4:
                x = x.contiguous(memory_format=self._memory_format)
            out = self._module(x)
            if isinstance(out, (tuple, list)):
                out = out[0]
            return out.float()

    def __repr__(self) -> str:
        return (f'InferenceEngine({self.model_path}, engine={self.engine}, device={self.device}, '
                f'precision={self.precision}, num_threads={self.num_threads})')
