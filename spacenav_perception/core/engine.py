"""InferenceEngine: one model file (TorchScript, torch.export .pt2 or ONNX) behind one call.

    engine = InferenceEngine('models/centroid.ts', device='auto', precision='fp32')
    y = engine(x)          # x: NCHW float32 tensor; y: float32 tensor on engine.device

- The manifest is verified (`load_manifest`: exists, sha256, task, servable input) BEFORE the
  model file is deserialised; a file that then fails to load raises ModelIntegrityError.
- Format by suffix: `.ts`/`.pt` TorchScript (torch.jit.load), `.pt2` torch.export
  (torch.export.load(...).module()), `.onnx` ONNX Runtime (CPU provider; CUDA provider first
  when the device is CUDA and onnxruntime-gpu offers it).
- device: 'auto' (CUDA when torch sees one, else CPU), 'cpu', 'cuda' / 'cuda:N'. 'cuda' without a
  GPU logs one warning and runs on CPU, or raises DeviceUnavailableError with strict_device=True.
- precision: 'fp32' | 'fp16' | 'bf16' | 'auto' (fp16 on CUDA, fp32 on CPU). Half precision is
  only used on CUDA with the torch engines; elsewhere a request logs a warning and uses fp32.
  Outputs are always float32.
- Threads: torch's / ONNX Runtime's default intra-op thread counts are left alone (the process
  owner may call torch.set_num_threads); nodes usually run one engine per process.
ROS-free.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .manifest import ModelIntegrityError, ModelManifest, fix_command, load_manifest

_LOG = logging.getLogger(__name__)
PRECISIONS = ('fp32', 'fp16', 'bf16', 'auto')
_DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


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


class InferenceEngine:
    """A verified model on a device. Call it with an NCHW float32 tensor."""

    def __init__(self, model_path, *, device: str = 'auto', precision: str = 'fp32',
                 strict_device: bool = False, expected_task: str | None = None,
                 warmup: bool = True, log: Callable[[str], None] | None = None):
        self.model_path = Path(model_path)
        self._warn = log or _LOG.warning
        suffix = self.model_path.suffix.lower()
        engines = {'.ts': 'torchscript', '.pt': 'torchscript', '.pt2': 'export',
                   '.onnx': 'onnxruntime'}
        if suffix not in engines:
            raise ModelIntegrityError(
                f'model {self.model_path}: suffix {suffix!r} is not a model format this runtime '
                f'loads (.ts, .pt, .pt2, .onnx). Re-export it with: {fix_command(self.model_path)}')
        self.engine = engines[suffix]
        self.device = resolve_device(device, strict=strict_device, warn=self._warn)
        self.manifest: ModelManifest = load_manifest(self.model_path, expected_task)
        self.sha256 = self.manifest.files[self.model_path.name]
        self.precision = resolve_precision(precision, self.device, self.engine, self._warn)
        self._dtype = _DTYPES[self.precision]
        self._torch_device = torch.device(self.device)
        self._session = None
        self._module = None
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
        if warmup:
            self(torch.zeros(self.input_shape, dtype=torch.float32, device=self._torch_device))

    # ------------------------------------------------------------------ loading
    def _load(self) -> None:
        path = str(self.model_path)
        if self.engine == 'torchscript':
            with warnings.catch_warnings():   # TorchScript is a supported format here
                warnings.filterwarnings('ignore', r'.*torch\.jit.*deprecated',
                                        DeprecationWarning)
                module = torch.jit.load(path, map_location=self._torch_device)
            module.eval()
            self._module = module.to(self._dtype) if self._dtype != torch.float32 else module
        elif self.engine == 'export':
            module = torch.export.load(path).module()
            module = module.to(self._torch_device)
            self._module = module.to(self._dtype) if self._dtype != torch.float32 else module
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
            self._session = ort.InferenceSession(path, sess_options=options, providers=providers)
            self._input_name = self._session.get_inputs()[0].name

    # ------------------------------------------------------------------ running
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if self._session is not None:
                feed = x.detach().to('cpu', torch.float32).contiguous().numpy()
                out = self._session.run(None, {self._input_name: feed})[0]
                return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(
                    self._torch_device)
            x = x.to(self._torch_device, self._dtype, non_blocking=True)
            out = self._module(x)
            if isinstance(out, (tuple, list)):
                out = out[0]
            return out.float()

    def __repr__(self) -> str:
        return (f'InferenceEngine({self.model_path}, engine={self.engine}, device={self.device}, '
                f'precision={self.precision})')
