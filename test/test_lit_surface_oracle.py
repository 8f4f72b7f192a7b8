"""The lit-surface oracle study (`spacenav eval centroid-oracle`): the shape prior, which surface
the frame shows, the projection into pixels, and the study over a rendered dataset."""
import csv
import json

import numpy as np
import pytest

from spacenav_perception.cli import main
from spacenav_perception.evaluation import lit_surface_oracle as oracle
from spacenav_perception.synth import asteroid as A


@pytest.fixture(scope='module')
def prior():
    return oracle.fit_shape_prior(n_shapes=160, seed=3, components=24, n_holdout=80, subsample=8,
                                  progress=False)


def _body_dirs(prior, observed):
    _, _, u = A._grid_directions(*prior.grid)
    return u[observed]


def test_prior_seeing_nothing_leaves_the_prior_spread(prior):
    none = np.zeros(prior.mean.shape, bool)
    spread = prior.held_com - prior.com_mean
    np.testing.assert_allclose(prior.error_covariance(none), spread.T @ spread / len(spread))


def test_prior_seeing_more_of_the_surface_tells_more(prior):
    _, _, u = A._grid_directions(*prior.grid)
    u = u.reshape(-1, 3)
    none = np.trace(prior.error_covariance(np.zeros(len(u), bool)))
    half = prior.error_covariance(u[:, 0] > 0)
    every = np.trace(prior.error_covariance(np.ones(len(u), bool)))
    assert every < 0.25 * none
    assert every < np.trace(half) < none
    # the unseen side (-x) moves the answer along x more than across it
    assert half[0, 0] > half[1, 1] and half[0, 0] > half[2, 2]


def _scene(phase_deg):
    return A.sample_scene(np.random.default_rng(11), 160, phase_deg=phase_deg, moonlet=False,
                          cut=False, range_km=12.0)


@pytest.mark.parametrize('phase_deg', [0.0, 90.0])
def test_observed_nodes_face_the_camera_and_the_sun(prior, phase_deg):
    scene = _scene(phase_deg)
    observed = oracle.lit_visible_nodes(scene, prior.grid)
    assert observed.any()
    world = _body_dirs(prior, observed) @ scene.primary.R.T
    view = scene.cam_C / np.linalg.norm(scene.cam_C)          # body -> camera (world)
    assert (world @ view).mean() > 0.4
    assert (world @ scene.sun).mean() > 0.4
    # node directions are radial, not surface normals (the spinning top's ridge tilts them),
    # and snapped to the coarse grid: a little past 90 degrees from the sun or camera at most
    assert (world @ view > -0.4).all() and (world @ scene.sun > -0.4).all()
    # at phase 90 degrees a quarter of the body is lit and seen, at 0 about half
    frac = {0.0: (0.3, 0.7), 90.0: (0.1, 0.45)}[phase_deg]
    _, _, u = A._grid_directions(*prior.grid)
    w = np.cos(np.arcsin(u[..., 2]))                           # node area ~ cos(lat)
    share = (w * observed).sum() / w.sum()
    assert frac[0] < share < frac[1], share


def test_image_covariance_scales_metres_to_pixels():
    scene = _scene(30.0)
    px = oracle.image_covariance(scene, np.eye(3) * 4.0)       # 2 m rms per axis
    z = (scene.cam_R @ (scene.com_world - scene.cam_C))[2]
    scale = scene.focal / z
    np.testing.assert_allclose(np.diag(px), [4.0 * scale ** 2] * 2, rtol=0.02)


@pytest.fixture(scope='module')
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp('oracle_set')
    A.render_dataset(root, 3, seed=17, size=96, device='cpu', progress=False)
    return root


def test_study_over_a_rendered_set(prior, rendered, tmp_path):
    per_frame = tmp_path / 'per_frame.csv'
    with open(per_frame, 'w', newline='') as fh:
        w = csv.writer(fh)
        w.writerow(['image_name', 'error_any_px'])
        for i in range(3):
            w.writerow([A.image_name(i), 1.5 * (i + 1)])
    r = oracle.study(rendered, prior, progress=False, draws=50, model_per_frame=per_frame)
    assert r['n'] == 3 and len(r['frames']) == 3
    assert r['model']['median_px'] == pytest.approx(3.0)
    assert sum(b['n'] for b in r['by_phase']) == 3
    for f in r['frames']:
        assert f['oracle_rms_px'] > 0
        assert f['oracle_rms_px'] ** 2 == pytest.approx(
            f['oracle_along_sun_rms_px'] ** 2 + f['oracle_across_sun_rms_px'] ** 2)
    assert 'median' in oracle.format_table(r)


def test_study_refuses_frames_it_cannot_draw_again(prior, rendered, tmp_path):
    import shutil
    copy = tmp_path / 'copy'
    shutil.copytree(rendered, copy)
    rows = list(csv.DictReader(open(copy / 'meta.csv')))
    rows[1]['x_coordinate'] = str(float(rows[1]['x_coordinate']) + 2.0)
    with open(copy / 'meta.csv', 'w', newline='') as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ValueError, match='renderer has changed'):
        oracle.study(copy, prior, progress=False)
    with open(copy / 'meta.csv', 'w', newline='') as fh:
        fh.write('image_name,phase_deg\nasteroid_000000.png,10\n')
    with pytest.raises(ValueError, match='no seed, index, size, x_coordinate, y_coordinate'):
        oracle.study(copy, prior, progress=False)


def test_cli_json_and_clear_errors(rendered, tmp_path, capsys):
    assert main(['eval', 'centroid-oracle', '--data', str(rendered), '--shapes', '60',
                 '--components', '8', '--held-out', '30', '--limit', '2', '--json']) == 0
    r = json.loads(capsys.readouterr().out)
    assert r['n'] == 2 and r['prior']['components'] == 8 and 'model' not in r
    assert main(['eval', 'centroid-oracle', '--data', str(tmp_path / 'nothing'),
                 '--shapes', '20', '--components', '4']) == 2
    assert 'meta.csv is missing' in capsys.readouterr().err
