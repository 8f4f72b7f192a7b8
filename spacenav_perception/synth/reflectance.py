"""Disk-resolved reflectance laws of regolith for the asteroid and lunar renderers.

Each law maps, per surface point, the cosines of the incidence angle (`mu0`, toward the sun) and
of the emission angle (`mu`, toward the camera) and the phase angle to a radiance factor (up to
a constant: the sensor model scales each frame by its own exposure). The phase angle is one
number per frame for the asteroid (a distant body) and a tensor of one angle per point for the
lunar surface (the camera stands on it). Only points with mu0 > 0 that nothing shadows matter.

Laws
    ``mcewen``        lunar-Lambert, 2 L mu0 / (mu0 + mu) + (1 - L) mu0, with L(phase) from
                      McEwen's polynomial fit (L = 1 at 0 deg, about 0 beyond 110 deg). The
                      renderer's default law since its first session.
    ``lunar_lambert`` the same form with a constant L in [0, 1]: from pure Lambert (L = 0, dark
                      limb) to Lommel-Seeliger (L = 1, flat disc at low phase).
    ``minnaert``      mu0^k mu^(k - 1), k in [0.5, 1] (k = 1 is Lambert); mu is floored at
                      0.05 in the limb factor, where the empirical law stops holding.
    ``hapke``         Hapke's bidirectional reflectance without macroscopic roughness:
                      mu0 / (mu0 + mu) [(1 + B(g)) p(g) + H(mu0) H(mu) - 1], single-scattering
                      albedo w, one-term Henyey-Greenstein particle phase function p with
                      asymmetry xi < 0 (back-scattering), shadow-hiding opposition surge
                      B(g) = B0 / (1 + tan(g / 2) / h), and the H-function approximation
                      H(x) = (1 + 2x) / (1 + 2x sqrt(1 - w)).

Modes (the renderer's ``reflectance`` option and ``spacenav synth asteroid --reflectance``)
    ``lunar-lambert`` every frame uses ``mcewen`` (the default; data sets rendered before this
                      module existed are reproduced byte for byte, asteroid and lunar).
    ``varied``        each frame draws one of the four laws with equal probability and its
                      parameters uniformly from the ranges above (w 0.05-0.6, xi -0.5-0,
                      B0 0-1, h 0.02-0.12), so a network does not learn one law's limb and
                      terminator profile as if it were the body's outline. The draw comes from
                      a stream spawned from the frame's generator: the scene (shape, pose,
                      sun, sensor, noise) is the one the default mode renders.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MODES = ('lunar-lambert', 'varied')
FAMILIES = ('mcewen', 'lunar_lambert', 'minnaert', 'hapke')
MINNAERT_MU_FLOOR = 0.05
RANGES = {
    'lunar_lambert': {'L': (0.0, 1.0)},
    'minnaert': {'k': (0.5, 1.0)},
    'hapke': {'w': (0.05, 0.6), 'xi': (-0.5, 0.0), 'B0': (0.0, 1.0), 'h': (0.02, 0.12)},
}


def mcewen_weight(phase_deg):
    """McEwen's L(alpha) (alpha in degrees: a float or a tensor), clamped to [0, 1]."""
    a = phase_deg
    val = 1 - 0.019 * a + 2.42e-4 * a ** 2 - 1.46e-6 * a ** 3
    if isinstance(val, torch.Tensor):
        return val.clamp(0.0, 1.0)
    return min(1.0, max(0.0, val))


def lunar_lambert(mu0, mu, L: float):
    return 2 * L * mu0 / (mu0 + mu) + (1 - L) * mu0


def minnaert(mu0, mu, k: float):
    return mu0 ** k * mu.clamp_min(MINNAERT_MU_FLOOR) ** (k - 1)


def hapke(mu0, mu, phase_deg, w: float, xi: float, B0: float, h: float):
    if isinstance(phase_deg, torch.Tensor):
        g = torch.deg2rad(phase_deg)
        cos_g, tan_half = torch.cos(g), torch.tan(g / 2)
    else:
        g = math.radians(phase_deg)
        cos_g, tan_half = math.cos(g), math.tan(g / 2)
    p = (1 - xi * xi) / (1 + 2 * xi * cos_g + xi * xi) ** 1.5
    B = B0 / (1 + tan_half / h)
    gamma = math.sqrt(1 - w)

    def H(x):
        return (1 + 2 * x) / (1 + 2 * gamma * x)

    return w / 4 * mu0 / (mu0 + mu) * ((1 + B) * p + H(mu0) * H(mu) - 1)


@dataclass(frozen=True)
class ReflectanceLaw:
    """One frame's law: `family` (FAMILIES) and its parameters as (name, value) pairs."""
    family: str = 'mcewen'
    params: tuple = ()

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f'unknown reflectance law {self.family!r} (one of {FAMILIES})')
        expected = set(RANGES.get(self.family, {}))
        if {k for k, _ in self.params} != expected:
            raise ValueError(f'{self.family} takes parameters {sorted(expected)}, '
                             f'got {[k for k, _ in self.params]}')

    def __call__(self, mu0, mu, phase_deg):
        """Radiance factor for torch tensors mu0 (>= 0) and mu (> 0); phase_deg a float or a
        tensor shaped like mu0."""
        p = dict(self.params)
        if self.family == 'mcewen':
            return lunar_lambert(mu0, mu, mcewen_weight(phase_deg))
        if self.family == 'lunar_lambert':
            return lunar_lambert(mu0, mu, p['L'])
        if self.family == 'minnaert':
            return minnaert(mu0, mu, p['k'])
        return hapke(mu0, mu, phase_deg, **p)

    def describe(self) -> str:
        """Short text for meta.csv, e.g. 'minnaert k=0.712'."""
        return ' '.join([self.family] + [f'{k}={v:.3f}' for k, v in self.params])


def sample_law(rng, mode: str = 'lunar-lambert') -> ReflectanceLaw:
    """The law of one frame under `mode` (MODES); `rng` is only drawn from in 'varied' mode."""
    if mode == 'lunar-lambert':
        return ReflectanceLaw()
    if mode != 'varied':
        raise ValueError(f'unknown reflectance mode {mode!r} (one of {MODES})')
    family = FAMILIES[int(rng.integers(0, len(FAMILIES)))]
    params = tuple((name, float(rng.uniform(lo, hi)))
                   for name, (lo, hi) in RANGES.get(family, {}).items())
    return ReflectanceLaw(family, params)


def frame_law(frame_rng, mode: str = 'lunar-lambert') -> ReflectanceLaw:
    """The law of one rendered frame under `mode`, drawn (in 'varied' mode) from a stream
    spawned from the frame's generator: the frame's own draws (scene, sensor, noise) are those
    of the default mode, whichever law is drawn."""
    if mode == 'varied':
        return sample_law(frame_rng.spawn(1)[0], mode)
    return sample_law(None, mode)
