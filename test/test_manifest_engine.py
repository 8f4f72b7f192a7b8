"""core/manifest + core/engine: integrity failures, formats agree, device fallback."""
import json
import shutil

import pytest
import torch

from spacenav_perception.core import engine as engine_module
from spacenav_perception.core.engine import (ENGINE_PREFERENCE, SUFFIX_OF_ENGINE,
                                             DeviceUnavailableError, InferenceEngine,
                                             resolve_device, resolve_precision)
from spacenav_perception.core.manifest import (ModelIntegrityError, load_manifest,
                                               manifest_path_for, sha256_file, write_manifest)
from spacenav_perception.nets.reference import export_reference_model

H, W = 24, 32


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """The reference centroid and segmentation models in all three formats (exported once)."""
    out = tmp_path_factory.mktemp('models')
    return {kind: export_reference_model(kind, out, H, W, formats=('ts', 'pt2', 'onnx'))
            for kind in ('centroid', 'segmentation')}


@pytest.fixture
def model_copy(models, tmp_path):
    """A private copy of the centroid .ts model and its manifest (safe to damage)."""
    src = models['centroid']
    shutil.copy(src, tmp_path / src.name)
    shutil.copy(manifest_path_for(src), tmp_path / manifest_path_for(src).name)
    return tmp_path / src.name


def fails_with(path, *words, **kwargs):
    with pytest.raises(ModelIntegrityError) as info:
        load_manifest(path, **kwargs)
    message = str(info.value)
    assert str(path) in message
    assert 'Re-export it with:' in message
    for word in words:
        assert word in message, message
    return message


def test_manifest_round_trip(models):
    path = models['centroid']
    manifest = load_manifest(path, expected_task='centroid')
    assert manifest.input.height == H and manifest.input.width == W
    assert manifest.files[path.name] == sha256_file(path)
    assert set(manifest.files) == {path.name, path.with_suffix('.pt2').name,
                                   path.with_suffix('.onnx').name}
    assert manifest_path_for('models/centroid.onnx').as_posix() == 'models/centroid.json'


def test_missing_model_file(tmp_path):
    message = fails_with(tmp_path / 'nothing.ts', 'does not exist')
    assert 'spacenav export --checkpoint CKPT --out' in message


def test_missing_manifest(model_copy):
    manifest_path_for(model_copy).unlink()
    fails_with(model_copy, 'is missing', str(manifest_path_for(model_copy)))


@pytest.mark.parametrize('text', ['{not json', '[1, 2]', '{"name": "x"}'])
def test_corrupt_manifest(model_copy, text):
    manifest_path_for(model_copy).write_text(text)
    fails_with(model_copy, 'unreadable or corrupt')


def test_hash_mismatch_uses_export_command(model_copy):
    with open(model_copy, 'ab') as handle:
        handle.write(b'tampered')
    message = fails_with(model_copy, 'sha256', 'differs')
    assert 'python -m spacenav_perception.nets.reference centroid' in message


def test_file_not_listed(model_copy):
    mpath = manifest_path_for(model_copy)
    data = json.loads(mpath.read_text())
    data['files'] = {'other.ts': 'abc'}
    mpath.write_text(json.dumps(data))
    fails_with(model_copy, 'does not list')


def test_wrong_task(model_copy):
    fails_with(model_copy, "'segmentation' model is needed", expected_task='segmentation')


@pytest.mark.parametrize('change,words', [
    (lambda d: d['input'].update(channels=2), '2 channels'),
    (lambda d: d['input'].update(height=0), 'height 0'),
    (lambda d: d['input'].update(resize='lanczos'), 'lanczos'),
    (lambda d: d['input'].update(std=[0.0]), 'std'),
    (lambda d: d.update(output='logits_nchw'), "cannot serve task 'centroid'"),
])
def test_unservable_input_or_output(model_copy, change, words):
    mpath = manifest_path_for(model_copy)
    data = json.loads(mpath.read_text())
    change(data)
    mpath.write_text(json.dumps(data))
    fails_with(model_copy, words)


def test_corrupt_model_file_with_valid_hash(tmp_path):
    path = tmp_path / 'broken.ts'
    path.write_bytes(b'this is not a torchscript archive')
    write_manifest(path, task='centroid', arch='none', output='xy_norm_logit',
                   input={'height': 4, 'width': 4, 'channels': 1, 'resize': 'area',
                          'mean': [0.0], 'std': [1.0]})
    with pytest.raises(ModelIntegrityError) as info:
        InferenceEngine(path, device='cpu')
    assert str(path) in str(info.value) and 'could not be loaded' in str(info.value)


def test_engine_verifies_manifest_before_loading(model_copy):
    with open(model_copy, 'ab') as handle:
        handle.write(b'x')
    with pytest.raises(ModelIntegrityError, match='sha256'):
        InferenceEngine(model_copy, device='cpu')


@pytest.mark.parametrize('kind', ['centroid', 'segmentation'])
def test_formats_give_the_same_outputs(models, kind):
    base = models[kind]
    channels = 1 if kind == 'centroid' else 3
    x = torch.rand(1, channels, H, W, generator=torch.Generator().manual_seed(3))
    outputs = {}
    for suffix, engine_name in [('.ts', 'torchscript'), ('.pt2', 'export'),
                                ('.onnx', 'onnxruntime')]:
        engine = InferenceEngine(base.with_suffix(suffix), device='cpu', expected_task=kind)
        assert engine.engine == engine_name and engine.device == 'cpu'
        assert engine.precision == 'fp32' and engine.sha256 == sha256_file(engine.model_path)
        out = engine(x)
        assert out.dtype == torch.float32
        outputs[suffix] = out
    torch.testing.assert_close(outputs['.pt2'], outputs['.ts'], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outputs['.onnx'], outputs['.ts'], rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason='tests the no-GPU fallback')
def test_cuda_without_gpu_falls_back_with_one_warning(models):
    messages = []
    engine = InferenceEngine(models['centroid'], device='cuda', precision='auto',
                             log=messages.append)
    assert engine.device == 'cpu' and engine.precision == 'fp32'
    assert len(messages) == 1 and 'CPU' in messages[0]
    with pytest.raises(DeviceUnavailableError):
        InferenceEngine(models['centroid'], device='cuda', strict_device=True)
    messages.clear()
    assert resolve_precision('fp16', 'cpu', 'torchscript', messages.append) == 'fp32'
    assert len(messages) == 1


def test_device_and_precision_validation():
    assert resolve_device('cpu') == 'cpu'
    assert resolve_device('auto') == ('cuda' if torch.cuda.is_available() else 'cpu')
    with pytest.raises(ValueError, match='unknown device'):
        resolve_device('tpu')
    with pytest.raises(ValueError, match='unknown precision'):
        resolve_precision('int8', 'cpu', 'torchscript')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
@pytest.mark.parametrize('suffix', ['.ts', '.pt2'])
@pytest.mark.parametrize('precision', ['fp16', 'bf16'])
def test_gpu_half_precision_agrees_with_fp32(models, suffix, precision):
    for kind, channels in [('centroid', 1), ('segmentation', 3)]:
        path = models[kind].with_suffix(suffix)
        x = torch.rand(1, channels, H, W, device='cuda')
        full = InferenceEngine(path, device='cuda', precision='fp32')(x)
        half_engine = InferenceEngine(path, device='cuda', precision=precision)
        assert half_engine.precision == precision
        half = half_engine(x)
        assert half.dtype == torch.float32 and half.device.type == 'cuda'
        torch.testing.assert_close(half, full, rtol=2e-2, atol=2e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_gpu_onnx_output_on_cuda(models):
    engine = InferenceEngine(models['centroid'].with_suffix('.onnx'), device='cuda')
    out = engine(torch.rand(1, 1, H, W, device='cuda'))
    assert out.device.type == 'cuda' and out.dtype == torch.float32


# ---------------------------------------------------------------- engine selection
@pytest.fixture
def partial_models(tmp_path):
    """A fresh export of the reference centroid model in all three formats (files removable)."""
    return export_reference_model('centroid', tmp_path, H, W, formats=('ts', 'pt2', 'onnx'))


def test_default_engine_is_the_given_file(models):
    for suffix, name in [('.ts', 'torchscript'), ('.pt2', 'export'), ('.onnx', 'onnxruntime')]:
        engine = InferenceEngine(models['centroid'].with_suffix(suffix), device='cpu')
        assert engine.engine == name and engine.model_path.suffix == suffix


@pytest.mark.parametrize('name,suffix', [('torchscript', '.ts'), ('export', '.pt2'),
                                         ('onnxruntime', '.onnx')])
def test_explicit_engine_loads_that_sibling(models, name, suffix):
    engine = InferenceEngine(models['centroid'], device='cpu', engine=name)
    assert engine.engine == name
    assert engine.model_path == models['centroid'].with_suffix(suffix)
    assert engine.sha256 == sha256_file(engine.model_path)


def test_auto_follows_the_preference_table(partial_models):
    order = ENGINE_PREFERENCE['cpu']
    assert set(order) == {'torchscript', 'export', 'onnxruntime'}
    given = partial_models.with_suffix('.pt2')
    for step in range(len(order)):
        engine = InferenceEngine(given, device='cpu', engine='auto')
        assert engine.engine == order[step], (step, engine)
        engine.model_path.unlink()         # the next preference must be taken now
        if engine.model_path == given:
            break


def test_auto_skips_onnx_without_onnxruntime(partial_models, monkeypatch):
    monkeypatch.setattr(engine_module, 'onnxruntime_available', lambda: False)
    engine = InferenceEngine(partial_models, device='cpu', engine='auto')
    expected = next(e for e in ENGINE_PREFERENCE['cpu'] if e != 'onnxruntime')
    assert engine.engine == expected


def test_auto_skips_a_sibling_that_fails_verification(partial_models):
    first = partial_models.with_suffix(SUFFIX_OF_ENGINE[ENGINE_PREFERENCE['cpu'][0]])
    with open(first, 'ab') as handle:
        handle.write(b'tampered')
    messages = []
    engine = InferenceEngine(partial_models, device='cpu', engine='auto', log=messages.append)
    assert engine.model_path != first
    assert any('sha256' in m and str(first) in m for m in messages)


def test_explicit_engine_with_missing_file(partial_models):
    onnx = partial_models.with_suffix('.onnx')
    onnx.unlink()
    with pytest.raises(ModelIntegrityError) as info:
        InferenceEngine(partial_models, device='cpu', engine='onnxruntime')
    message = str(info.value)
    assert str(onnx) in message and 'does not exist' in message
    assert 'python -m spacenav_perception.nets.reference centroid' in message   # the fix


def test_engine_and_threads_validation(models):
    with pytest.raises(ValueError, match='unknown engine'):
        InferenceEngine(models['centroid'], device='cpu', engine='tensorrt')
    with pytest.raises(ValueError, match='num_threads'):
        InferenceEngine(models['centroid'], device='cpu', num_threads=-1)


def test_num_threads_sets_torch_and_onnxruntime(models):
    before = torch.get_num_threads()
    try:
        x = torch.rand(1, 1, H, W)
        ref = InferenceEngine(models['centroid'], device='cpu')(x)
        for name in ('torchscript', 'onnxruntime'):
            engine = InferenceEngine(models['centroid'], device='cpu', engine=name, num_threads=1)
            assert torch.get_num_threads() == 1 and engine.num_threads == 1
            torch.testing.assert_close(engine(x), ref, rtol=1e-5, atol=1e-5)
        session = engine._session
        assert session.get_session_options().intra_op_num_threads == 1
    finally:
        torch.set_num_threads(before)
