"""Polychromatic line integrals in a water-iodine material basis (beam hardening).

Every material is written as a combination of two basis materials, water and iodine, as in
dual-energy CT: ``mu_m(E) ~ a_m mu_water(E) + b_m 1e-3 (mu/rho)_I(E)`` with ``a_m`` unitless
(water-equivalent density) and ``b_m`` in mg I/mL. The coefficients are a relative least-squares
fit over :data:`BASIS_FIT_KEV` (the energies a filtered 80-140 kVp beam carries); tissues get
``b`` near 0, bone a positive ``b``, enhanced blood ``b`` equal to its iodine concentration.
A voxel volume is then two maps (water-equivalent density, iodine-equivalent mg/mL) whose
projections ``L_w`` (mm) and ``L_i`` (mg/mL * mm) give the detected signal of a spectrum

``T(L_w, L_i) = sum_E q(E) exp(-mu_water(E) L_w / 10 - 1e-4 (mu/rho)_I(E) L_i)``

(``q`` the detected weights of :class:`~fedsim_tf.physics.spectrum.XraySpectrum`, the 1/10
turns mm into cm). ``-ln T`` is what a scanner measures: it grows less than linearly with the
path (beam hardening: cupping of uniform objects, dark streaks between bones).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from fedsim_tf.physics.materials import Material, mu_curve
from fedsim_tf.physics.spectrum import XraySpectrum
from fedsim_tf.physics.xray_data import element_mass_attenuation

BASIS_FIT_KEV: tuple[float, float] = (40.0, 120.0)
"""Energy range (keV) of the basis fit."""
TABLE_NODES: tuple[int, int] = (513, 129)
"""Nodes of the ``(L_w, L_i)`` look-up table along each axis."""


@functools.lru_cache(maxsize=None)
def basis_coefficients(material: Material) -> tuple[float, float]:
    """``(water-equivalent density, iodine-equivalent mg/mL)`` of ``material`` (no iodine added),
    the relative least-squares fit of its attenuation over :data:`BASIS_FIT_KEV`."""
    kev = np.arange(BASIS_FIT_KEV[0], BASIS_FIT_KEV[1] + 0.5, 1.0)
    target = mu_curve(Material(material), kev)
    design = np.stack([mu_curve(Material.WATER, kev), 1e-3 * element_mass_attenuation("I", kev)], axis=1)
    (water, iodine), *_ = np.linalg.lstsq(design / target[:, None], np.ones_like(kev), rcond=None)
    return float(water), float(iodine)


def basis_luts() -> tuple[np.ndarray, np.ndarray]:
    """``(len(Material),)`` float32 look-up tables material index -> water-equivalent density and
    -> iodine-equivalent mg/mL (no contrast added)."""
    pairs = np.array([basis_coefficients(m) for m in Material], dtype=np.float32)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


class PolychromaticScanner:
    """Detected signal of one spectrum behind water/iodine basis line integrals.

    Args:
        spectrum: the tube spectrum (detected weights are used).
    """

    def __init__(self, spectrum: XraySpectrum) -> None:
        self.spectrum = spectrum
        self._weights = spectrum.detected_weights
        self._water_per_mm = mu_curve(Material.WATER, spectrum.energies_kev) / 10.0
        self._iodine_per_mg_ml_mm = 1e-4 * element_mass_attenuation("I", spectrum.energies_kev)

    def exact_log_attenuation(self, water_mm: np.ndarray, iodine_mm: np.ndarray) -> np.ndarray:
        """``-ln T`` by the sum over energy bins (float64; memory ``O(size * bins)``).

        Args:
            water_mm: array of any shape, water-basis line integrals (mm).
            iodine_mm: same shape, iodine-basis line integrals (mg/mL * mm).
        """
        water = np.asarray(water_mm, dtype=np.float64)[..., None]
        iodine = np.asarray(iodine_mm, dtype=np.float64)[..., None]
        exponent = -water * self._water_per_mm - iodine * self._iodine_per_mg_ml_mm
        return -np.log(np.exp(exponent) @ self._weights)

    def log_attenuation(self, water_mm: np.ndarray, iodine_mm: np.ndarray) -> np.ndarray:
        """``-ln T`` of many rays through a bilinear look-up table spanning the inputs' range
        (:data:`TABLE_NODES`; ``-ln T`` is smooth, the table error is below 1e-5 of the value).

        Args:
            water_mm: array of any shape, water-basis line integrals (mm).
            iodine_mm: same shape, iodine-basis line integrals (mg/mL * mm).

        Returns:
            float32 array of the same shape.
        """
        water = np.asarray(water_mm, dtype=np.float32)
        iodine = np.asarray(iodine_mm, dtype=np.float32)
        if water.shape != iodine.shape:
            raise ValueError(f"water_mm {water.shape} and iodine_mm {iodine.shape} must have the same shape")
        axes = []
        for values, nodes in zip((water, iodine), TABLE_NODES):
            lo, hi = float(values.min()), float(values.max())
            axes.append(np.linspace(lo, hi if hi > lo else lo + 1.0, nodes))
        table = self.exact_log_attenuation(*np.meshgrid(*axes, indexing="ij"))
        coords = [(v - a[0]) / (a[1] - a[0]) for v, a in zip((water, iodine), axes)]
        return ndimage.map_coordinates(table.astype(np.float32), coords, order=1, mode="nearest")
