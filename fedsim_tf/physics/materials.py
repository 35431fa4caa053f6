"""Linear attenuation of the tissues of a cardiac CT, Hounsfield units and the per-label atlas.

All attenuation coefficients ``mu`` in this module are **per centimetre** (/cm) unless a name
ends in ``_per_mm``; the projectors of ``pyronn_ops`` integrate ``value * mm``, so multiply by
``0.1`` (:func:`per_cm_to_per_mm`) before projecting.

Every material is an elemental composition (mass fractions, ICRU Report 44) with a density;
``mu(E) = density * sum_i w_i (mu/rho)_i(E)`` with the tabulated element cross sections of
:mod:`fedsim_tf.physics.xray_data` (10-150 keV). At the 70 keV reference energy this gives the
reference table (``shared/reference/heart-data-materials.md``):

===============  =========  ===========  =====
material         g/cm^3     mu (/cm)     HU
===============  =========  ===========  =====
air              0.0012     0.0002       -999
water            1.00       0.1929       0
blood            1.06       0.2037       +56
myocardium       1.05       0.2011       +43
soft tissue      1.06       0.2031       +53
adipose          0.95       0.1781       -76
lung (inflated)  0.26       0.0499       -741
cortical bone    1.92       0.4935       +1559
===============  =========  ===========  =====

Enhanced blood is blood plus iodine: ``mu = mu_blood + c * 1e-3 * (mu/rho)_I`` with ``c`` in
mg I per mL (iodine's ``mu/rho`` is 5.02 cm^2/g at 70 keV: 8 / 10 / 12 mg/mL -> 264 / 316 /
368 HU). Tissue HU now depend (slightly) on the energy, bone and iodine strongly: lower energy
gives brighter bone and contrast.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from fedsim_tf.physics.xray_data import TABLE_RANGE_KEV, element_mass_attenuation, mixture_mass_attenuation

REFERENCE_KEV = 70.0
"""Energy (keV) of the reference table and the default effective energy."""

ENERGY_RANGE_KEV: tuple[float, float] = TABLE_RANGE_KEV
"""Energies (keV) the model accepts (the range of the cross-section table)."""


class Material(IntEnum):
    """Material indices stored in material-index volumes (uint8)."""

    AIR = 0
    WATER = 1
    BLOOD = 2
    ENHANCED_BLOOD = 3
    MYOCARDIUM = 4
    SOFT_TISSUE = 5
    ADIPOSE = 6
    LUNG = 7
    CORTICAL_BONE = 8


@dataclass(frozen=True)
class Composition:
    """Density and elemental make-up of one material.

    Attributes:
        density: g/cm^3.
        mass_fractions: element symbol -> mass fraction in percent (ICRU-44 tables).
    """

    density: float
    mass_fractions: dict[str, float]


COMPOSITIONS: dict[Material, Composition] = {
    Material.AIR: Composition(0.0012, {"C": 0.0124, "N": 75.5268, "O": 23.1781, "Ar": 1.2827}),
    Material.WATER: Composition(1.00, {"H": 11.1894, "O": 88.8106}),
    Material.BLOOD: Composition(
        1.06, {"H": 10.2, "C": 11.0, "N": 3.3, "O": 74.5, "Na": 0.1, "P": 0.1, "S": 0.2, "Cl": 0.3, "K": 0.2, "Fe": 0.1}
    ),
    # Enhanced blood is blood; its iodine content is a scan parameter (material_mu's iodine_mg_ml).
    Material.ENHANCED_BLOOD: Composition(
        1.06, {"H": 10.2, "C": 11.0, "N": 3.3, "O": 74.5, "Na": 0.1, "P": 0.1, "S": 0.2, "Cl": 0.3, "K": 0.2, "Fe": 0.1}
    ),
    # Myocardium as ICRU-44 skeletal muscle.
    Material.MYOCARDIUM: Composition(
        1.05, {"H": 10.2, "C": 14.3, "N": 3.4, "O": 71.0, "Na": 0.1, "P": 0.2, "S": 0.3, "Cl": 0.1, "K": 0.4}
    ),
    Material.SOFT_TISSUE: Composition(
        1.06, {"H": 10.2, "C": 14.3, "N": 3.4, "O": 70.8, "Na": 0.2, "P": 0.3, "S": 0.3, "Cl": 0.2, "K": 0.3}
    ),
    Material.ADIPOSE: Composition(0.95, {"H": 11.4, "C": 59.8, "N": 0.7, "O": 27.8, "Na": 0.1, "S": 0.1, "Cl": 0.1}),
    # Inflated lung: ICRU-44 lung tissue at the density of air-filled lung.
    Material.LUNG: Composition(
        0.26, {"H": 10.3, "C": 10.5, "N": 3.1, "O": 74.9, "Na": 0.2, "P": 0.2, "S": 0.3, "Cl": 0.3, "K": 0.2}
    ),
    Material.CORTICAL_BONE: Composition(
        1.92, {"H": 3.4, "C": 15.5, "N": 4.2, "O": 43.5, "Na": 0.1, "Mg": 0.2, "P": 10.3, "S": 0.3, "Ca": 22.5}
    ),
}
"""Composition of every :class:`Material` (ICRU Report 44)."""

STRUCTURE_MATERIALS: tuple[Material, ...] = (
    Material.MYOCARDIUM,  # 1 lv_myo
    Material.ENHANCED_BLOOD,  # 2 la
    Material.ENHANCED_BLOOD,  # 3 lv
    Material.ENHANCED_BLOOD,  # 4 ra
    Material.ENHANCED_BLOOD,  # 5 rv
    Material.ENHANCED_BLOOD,  # 6 aorta
    Material.ENHANCED_BLOOD,  # 7 pa
)
"""Fixed material atlas (the paper's Fix-Mat): structure index 1..7 -> material."""


def _check_energy(kev: np.ndarray | float) -> np.ndarray:
    kev = np.asarray(kev, dtype=np.float64)
    lo, hi = ENERGY_RANGE_KEV
    if kev.size and (not np.all(np.isfinite(kev)) or kev.min() < lo or kev.max() > hi):
        raise ValueError(f"energy kev={kev.min() if kev.size else kev} is outside the model range [{lo}, {hi}] keV")
    return kev


def mu_curve(material: Material | int, kev: np.ndarray | float, iodine_mg_ml: float = 0.0) -> np.ndarray:
    """Linear attenuation (/cm) of ``material`` at many energies.

    Args:
        material: a :class:`Material`.
        kev: energies of any shape, keV, inside :data:`ENERGY_RANGE_KEV`.
        iodine_mg_ml: iodine concentration (mg I per mL) added to
            :attr:`Material.ENHANCED_BLOOD`; ignored for the other materials.

    Returns:
        float64 array of the shape of ``kev``.
    """
    material = Material(material)
    if iodine_mg_ml < 0:
        raise ValueError(f"iodine_mg_ml must be >= 0, got {iodine_mg_ml}")
    kev = _check_energy(kev)
    composition = COMPOSITIONS[material]
    mu = composition.density * mixture_mass_attenuation(composition.mass_fractions, kev)
    if material is Material.ENHANCED_BLOOD:
        mu = mu + iodine_mg_ml * 1e-3 * element_mass_attenuation("I", kev)
    return mu


def material_mu(material: Material | int, kev: float = REFERENCE_KEV, iodine_mg_ml: float = 0.0) -> float:
    """Linear attenuation (/cm) of ``material`` at ``kev`` (see :func:`mu_curve`)."""
    return float(mu_curve(material, float(kev), iodine_mg_ml))


def water_mu(kev: float = REFERENCE_KEV) -> float:
    """Water attenuation (/cm) at the energy ``kev``."""
    return material_mu(Material.WATER, kev)


def iodine_mass_attenuation(kev: float = REFERENCE_KEV) -> float:
    """Iodine mass attenuation (cm^2/g) at ``kev``."""
    return float(element_mass_attenuation("I", _check_energy(kev)))


def energy_of_water_mu(mu: float) -> float:
    """The energy (keV) at which water attenuates ``mu`` (/cm): the effective energy of a beam
    whose water attenuation is ``mu`` (water's ``mu`` falls monotonically over the range).

    Raises:
        ValueError: ``mu`` outside water's values over :data:`ENERGY_RANGE_KEV`.
    """
    lo, hi = ENERGY_RANGE_KEV
    if not water_mu(hi) <= mu <= water_mu(lo):
        raise ValueError(f"water attenuation {mu} /cm is outside [{water_mu(hi):.4f}, {water_mu(lo):.4f}]")
    for _ in range(60):  # bisection in log energy
        mid = float(np.sqrt(lo * hi))
        lo, hi = (mid, hi) if water_mu(mid) > mu else (lo, mid)
    return float(np.sqrt(lo * hi))


def attenuation_lut(kev: float = REFERENCE_KEV, iodine_mg_ml: float = 0.0) -> np.ndarray:
    """``(len(Material),)`` float64 look-up table material index -> mu (/cm), for
    ``lut[material_volume]``."""
    return np.array([material_mu(m, kev, iodine_mg_ml) for m in Material], dtype=np.float64)


def structure_lut(kev: float = REFERENCE_KEV, iodine_mg_ml: float = 0.0) -> np.ndarray:
    """``(8,)`` float64 look-up table label index 0..7 -> mu (/cm) of the Fix-Mat
    atlas; entry 0 (background) is water."""
    lut = [material_mu(Material.WATER, kev)]
    lut += [material_mu(m, kev, iodine_mg_ml) for m in STRUCTURE_MATERIALS]
    return np.array(lut, dtype=np.float64)


def mu_to_hu(mu: np.ndarray | float, kev: float = REFERENCE_KEV) -> np.ndarray:
    """Hounsfield units from attenuation.

    ``HU = 1000 (mu - mu_water) / (mu_water - mu_air)`` at the energy ``kev``.

    Args:
        mu: array of any shape, /cm.
        kev: effective energy in keV.
    Returns:
        float64 array of the same shape, HU.
    """
    mu_w = water_mu(kev)
    mu_a = material_mu(Material.AIR, kev)
    return 1000.0 * (np.asarray(mu, dtype=np.float64) - mu_w) / (mu_w - mu_a)


def hu_to_mu(hu: np.ndarray | float, kev: float = REFERENCE_KEV) -> np.ndarray:
    """Attenuation (/cm) from Hounsfield units, inverse of :func:`mu_to_hu`.

    Args:
        hu: array of any shape, HU.
        kev: effective energy in keV.
    Returns:
        float64 array of the same shape, /cm.
    """
    mu_w = water_mu(kev)
    mu_a = material_mu(Material.AIR, kev)
    return mu_w + np.asarray(hu, dtype=np.float64) * (mu_w - mu_a) / 1000.0


def iodine_for_blood_hu(hu: float, kev: float = REFERENCE_KEV) -> float:
    """Iodine concentration (mg I/mL) that gives enhanced blood the value ``hu`` at ``kev``."""
    extra = float(hu_to_mu(hu, kev)) - material_mu(Material.BLOOD, kev)
    conc = extra / (1e-3 * iodine_mass_attenuation(kev))
    if conc < 0:
        raise ValueError(f"blood HU {hu} is below unenhanced blood at {kev} keV")
    return conc


def per_cm_to_per_mm(mu: np.ndarray | float) -> np.ndarray:
    """Attenuation /cm -> /mm (what a projector integrating ``value * mm`` needs)."""
    return np.asarray(mu, dtype=np.float64) * 0.1
