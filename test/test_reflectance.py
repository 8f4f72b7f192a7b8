"""Reflectance laws of the asteroid and lunar renderers and their `reflectance='varied'` mode."""
import math

import numpy as np
import pytest
import torch

from spacenav_perception.synth import asteroid as A
from spacenav_perception.synth import lunar as LU
from spacenav_perception.synth import reflectance as R

MU0 = torch.tensor([0.05, 0.3, 0.6, 0.9, 1.0])
MU = torch.tensor([0.9, 0.5, 0.7, 0.2, 1.0])


def test_mcewen_is_lunar_lambert_with_the_polynomial_weight():
    law = R.ReflectanceLaw()
    for phase in (0.0, 30.0, 75.0, 119.0):
        a = phase
        L = min(1.0, max(0.0, 1 - 0.019 * a + 2.42e-4 * a ** 2 - 1.46e-6 * a ** 3))
        want = 2 * L * MU0 / (MU0 + MU) + (1 - L) * MU0
        assert torch.allclose(law(MU0, MU, phase), want)
    assert R.mcewen_weight(0.0) == 1.0 and R.mcewen_weight(120.0) == 0.0


def test_limits_of_the_families():
    lambert = MU0
    lommel_seeliger = MU0 / (MU0 + MU)
    ll = lambda L: R.ReflectanceLaw('lunar_lambert', (('L', L),))
    assert torch.allclose(ll(0.0)(MU0, MU, 40.0), lambert)
    assert torch.allclose(ll(1.0)(MU0, MU, 40.0), 2 * lommel_seeliger)
    assert torch.allclose(R.ReflectanceLaw('minnaert', (('k', 1.0),))(MU0, MU, 40.0), lambert)
    # Minnaert's limb factor is floored where the empirical law stops holding
    k = 0.5
    got = R.ReflectanceLaw('minnaert', (('k', k),))(MU0, torch.full_like(MU0, 1e-3), 40.0)
    assert torch.allclose(got, MU0 ** k * R.MINNAERT_MU_FLOOR ** (k - 1))
    # Hapke with a vanishing single-scattering albedo, an isotropic particle phase function and
    # no opposition surge is Lommel-Seeliger (H -> 1), scaled by w / 4
    w = 1e-6
    hp = R.ReflectanceLaw('hapke', (('w', w), ('xi', 0.0), ('B0', 0.0), ('h', 0.05)))
    assert torch.allclose(hp(MU0, MU, 40.0) / (w / 4), lommel_seeliger, rtol=1e-4)


def test_hapke_multiple_scattering_and_opposition_surge():
    base = dict(w=0.5, xi=0.0, B0=0.0, h=0.05)
    law = lambda **kw: R.ReflectanceLaw('hapke', tuple({**base, **kw}.items()))
    # H(x) = (1 + 2x) / (1 + 2x sqrt(1 - w)) by hand
    g = math.sqrt(0.5)
    H = lambda x: (1 + 2 * x) / (1 + 2 * g * x)
    want = 0.5 / 4 * MU0 / (MU0 + MU) * (H(MU0) * H(MU))
    assert torch.allclose(law()(MU0, MU, 40.0), want)
    # the surge brightens low phase far more than high phase
    ratio = lambda ph: float((law(B0=1.0)(MU0, MU, ph) / law()(MU0, MU, ph)).mean())
    assert ratio(1.0) > ratio(60.0) > 1.0
    # a back-scattering particle (xi < 0) is brighter at low phase than at high phase
    back = law(xi=-0.4)
    assert float(back(MU0, MU, 5.0).sum()) > float(back(MU0, MU, 100.0).sum())


def test_sample_law_modes_and_ranges():
    assert R.sample_law(None, 'lunar-lambert') == R.ReflectanceLaw()
    rng = np.random.default_rng(0)
    laws = [R.sample_law(rng, 'varied') for _ in range(400)]
    assert {law.family for law in laws} == set(R.FAMILIES)
    for law in laws:
        for name, value in law.params:
            lo, hi = R.RANGES[law.family][name]
            assert lo <= value <= hi
        out = law(MU0, MU, 60.0)
        assert torch.all(torch.isfinite(out)) and torch.all(out > 0)
    with pytest.raises(ValueError, match='unknown reflectance mode'):
        R.sample_law(rng, 'hapke')
    from spacenav_perception.commands.synth import REFLECTANCE_MODES
    assert REFLECTANCE_MODES == R.MODES            # the CLI's choices
    with pytest.raises(ValueError, match='unknown reflectance law'):
        R.ReflectanceLaw('phong')
    with pytest.raises(ValueError, match='minnaert takes parameters'):
        R.ReflectanceLaw('minnaert', (('L', 0.5),))


def _clean_sensor():
    return {'noise': False, 'n_stars': 0, 'n_hot_pixels': 0, 'black_level_dn': 0.0,
            'peak_fraction': 0.9}


def test_lambert_darkens_the_limb_that_lommel_seeliger_keeps():
    # smooth top seen pole-on at zero phase: under Lommel-Seeliger the disc is nearly flat,
    # under Lambert the limb goes dark (the profile the shipped network was trained on alone
    # until `varied` existed)
    opts = dict(perturb=False, moonlet=False, phase_deg=0.0, range_km=12.0, com_px=(63.5, 63.5),
                primary_rotation=np.eye(3), view_dir=(0.0, 0.0, 1.0), sensor=_clean_sensor())
    ls = R.ReflectanceLaw('lunar_lambert', (('L', 1.0),))
    lam = R.ReflectanceLaw('lunar_lambert', (('L', 0.0),))
    img_ls, xy_ls, meta_ls = A.render_scene(0, 128, 'cpu', reflectance=ls, **opts)
    img_lam, xy_lam, meta_lam = A.render_scene(0, 128, 'cpu', reflectance=lam, **opts)
    assert xy_ls == xy_lam
    assert meta_ls['reflectance'] == 'lunar_lambert L=1.000'
    r = meta_ls['apparent_diameter_px'] / 2
    yy, xx = np.mgrid[:128, :128]
    d = np.hypot(xx - 63.5, yy - 63.5)
    centre, limb = d < 0.2 * r, (d > 0.75 * r) & (d < 0.85 * r)
    contrast = lambda img: img[limb].mean() / img[centre].mean()
    assert contrast(img_ls) > 0.9
    assert contrast(img_lam) < 0.75


def test_varied_mode_keeps_the_scene_and_changes_only_the_law(tmp_path):
    size = 64
    A.render_dataset(tmp_path / 'd', 6, seed=21, size=size, device='cpu', progress=False)
    A.render_dataset(tmp_path / 'v', 6, seed=21, size=size, device='cpu', progress=False,
                     reflectance='varied')
    A.render_dataset(tmp_path / 'v2', 6, seed=21, size=size, device='cpu', progress=False,
                     reflectance='varied')
    import csv
    read = lambda p: list(csv.DictReader(open(p, newline='')))
    md, mv = read(tmp_path / 'd' / 'meta.csv'), read(tmp_path / 'v' / 'meta.csv')
    assert (tmp_path / 'd' / 'labels.csv').read_bytes() == (tmp_path / 'v' / 'labels.csv').read_bytes()
    assert (tmp_path / 'v' / 'meta.csv').read_bytes() == (tmp_path / 'v2' / 'meta.csv').read_bytes()
    changed = 0
    for a, b in zip(md, mv):
        assert a['reflectance'] == 'mcewen'
        family = b['reflectance'].split()[0]
        assert family in R.FAMILIES
        # the scene, the sensor settings and the silhouette are the default mode's
        same = set(A.META_FIELDS) - {'reflectance', 'gain_e_per_unit', 'saturated_px'}
        assert {k: a[k] for k in same} == {k: b[k] for k in same}
        name = a['image_name']
        assert ((tmp_path / 'd' / 'silhouettes' / name).read_bytes()
                == (tmp_path / 'v' / 'silhouettes' / name).read_bytes())
        assert ((tmp_path / 'v' / 'images' / name).read_bytes()
                == (tmp_path / 'v2' / 'images' / name).read_bytes())
        if family != 'mcewen' and int(a['lit_px']) > 0:
            changed += (tmp_path / 'd' / 'images' / name).read_bytes() != \
                (tmp_path / 'v' / 'images' / name).read_bytes()
    assert changed >= 1
    with pytest.raises(ValueError, match='unknown reflectance mode'):
        A.render_scene(0, 32, 'cpu', reflectance='lambert')


def test_a_tensor_of_phase_angles_gives_each_point_its_own_law():
    # the lunar renderer passes one phase angle per pixel; each must match the scalar law
    phases = torch.tensor([2.0, 35.0, 80.0, 130.0, 170.0])
    for law in (R.ReflectanceLaw(),
                R.ReflectanceLaw('hapke', (('w', 0.3), ('xi', -0.3), ('B0', 0.8), ('h', 0.05))),
                R.ReflectanceLaw('minnaert', (('k', 0.7),))):
        got = law(MU0, MU, phases)
        want = torch.stack([law(MU0[i:i + 1], MU[i:i + 1], float(ph))[0]
                            for i, ph in enumerate(phases)])
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-7), law.describe()
    assert torch.equal(R.mcewen_weight(torch.tensor([0.0, 150.0])), torch.tensor([1.0, 0.0]))


def test_lunar_varied_mode_keeps_the_labels_and_changes_only_the_shading():
    w, h = 120, 80
    laws, changed = set(), 0
    for i in range(6):
        rgb, gm, cm, meta = LU.render_scene(LU.image_rng(77, i), w, h, 'cpu')
        rgb_v, gm_v, cm_v, meta_v = LU.render_scene(LU.image_rng(77, i), w, h, 'cpu',
                                                    reflectance='varied')
        rgb_v2, *_ = LU.render_scene(LU.image_rng(77, i), w, h, 'cpu', reflectance='varied')
        assert meta['reflectance'] == 'mcewen'
        family = meta_v['reflectance'].split()[0]
        laws.add(family)
        # same scene: labels, depth, shadows and every other meta column
        assert np.array_equal(gm, gm_v) and np.array_equal(cm, cm_v)
        assert np.array_equal(meta['lit'], meta_v['lit'])
        assert {k: v for k, v in meta.items() if k in LU.META_FIELDS and k != 'reflectance'} == \
            {k: v for k, v in meta_v.items() if k in LU.META_FIELDS and k != 'reflectance'}
        assert np.array_equal(rgb_v, rgb_v2)        # deterministic
        if family == 'mcewen':
            assert np.array_equal(rgb, rgb_v)
        else:
            changed += not np.array_equal(rgb, rgb_v)
            # scaled to McEwen's median over the sunlit ground: same overall exposure
            lit = meta['lit'] & (gm != LU.SKY)
            assert abs(float(np.median(rgb_v[lit])) - float(np.median(rgb[lit]))) < 40
    assert changed >= 1 and len(laws) >= 2
