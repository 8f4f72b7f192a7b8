"""Robustness perturbations (`spacenav eval ... --perturb`): what each does to a frame."""
import cv2
import numpy as np
import pytest

from spacenav_perception.evaluation.perturbations import PERTURBATIONS, perturb

RNG = np.random.default_rng(11)
RGB = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)
MONO16 = RNG.integers(0, 65536, (24, 32), dtype=np.uint16)


@pytest.mark.parametrize('name', PERTURBATIONS)
def test_every_perturbation_keeps_dtype_and_shape_and_is_reproducible(name):
    for image in (RGB, MONO16):
        before = image.copy()
        out = perturb(image, name, index=3)
        assert out.dtype == image.dtype and out.shape == image.shape
        np.testing.assert_array_equal(out, perturb(image, name, index=3))
        np.testing.assert_array_equal(image, before)          # the input is not modified


def test_perturbations_do_what_their_names_say():
    f = RGB.astype(np.float64)
    np.testing.assert_array_equal(perturb(RGB, 'none'), RGB)
    np.testing.assert_allclose(perturb(RGB, 'gain0.5'), np.rint(f * 0.5), atol=1)
    assert (perturb(RGB, 'gain2.5') == 255).mean() > 0.5                  # bright parts clip
    np.testing.assert_allclose(perturb(RGB, 'gamma1.6'), np.rint((f / 255) ** 1.6 * 255), atol=1)
    np.testing.assert_allclose(perturb(RGB, 'offset0.05'),
                               np.minimum(f + 0.05 * 255, 255), atol=1)
    warm = perturb(RGB, 'warm').astype(np.float64)
    np.testing.assert_allclose(warm[..., 2], np.rint(f[..., 2] * 0.8), atol=1)
    np.testing.assert_array_equal(warm[..., 1], f[..., 1])
    gray = perturb(RGB, 'gray')
    luma = cv2.cvtColor(RGB, cv2.COLOR_RGB2GRAY)
    for c in range(3):
        np.testing.assert_array_equal(gray[..., c], luma)
    noisy = perturb(RGB, 'noise0.04', index=1).astype(np.float64) - f
    assert 6 < noisy[(f > 40) & (f < 215)].std() < 14                      # 0.04 * 255 = 10.2
    assert not np.array_equal(perturb(RGB, 'noise0.04', 1), perturb(RGB, 'noise0.04', 2))
    blurred = perturb(RGB, 'blur1.5')
    assert blurred.astype(np.float64).std() < 0.7 * f.std()               # white noise smoothed
    for colour_only in ('warm', 'gray'):                                    # mono frames untouched
        np.testing.assert_array_equal(perturb(MONO16, colour_only), MONO16)
    with pytest.raises(ValueError, match='unknown perturbation'):
        perturb(RGB, 'sepia')


def test_eval_centroid_perturb_scores_the_perturbed_frames(tmp_path, capsys):
    """`spacenav eval centroid --perturb NAME` through the analytic intensity-centroid model:
    its error on each perturbed frame is computed here, and must be what the command reports."""
    import json
    from fake_datasets import make_asteroid_set
    from spacenav_perception.cli import main as cli_main
    from spacenav_perception.data.asteroid_dataset import read_image
    from spacenav_perception.nets.reference import export_reference_model
    from spacenav_perception.training.centroid_task import read_dataset
    data = make_asteroid_set(tmp_path / 'data', n=5, size=64)
    ref = export_reference_model('centroid', tmp_path / 'ref', 64, 64)
    yy, xx = np.mgrid[:64, :64]
    medians = {}
    for name in ('none', 'offset0.05', 'gain0.5'):
        assert cli_main(['eval', 'centroid', '--data', str(data), '--model', str(ref), '--json',
                         '--perturb', name]) == 0
        r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert r['perturbation'] == name and r['n'] == 5
        errors = []
        for i, rec in enumerate(read_dataset(data)):
            img = perturb(read_image(rec.path), name, i).astype(np.float64)
            x, y = (img * xx).sum() / img.sum(), (img * yy).sum() / img.sum()
            errors.append(np.hypot(x - rec.x, y - rec.y))
        assert r['median_px'] == pytest.approx(float(np.median(errors)), abs=1e-3)
        medians[name] = r['median_px']
    # a black level pulls the intensity centroid toward the frame centre; a gain does not move it
    assert medians['offset0.05'] > medians['none'] + 1.0
    assert medians['gain0.5'] == pytest.approx(medians['none'], abs=0.05)
