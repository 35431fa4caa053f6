"""Linear attenuation of the tissues of a cardiac CT, Hounsfield units and the per-label atlas.

All attenuation coefficients ``mu`` in this module are **per centimetre** (/cm) unless a name
ends in ``_per_mm``; the projectors of ``pyronn_ops`` integrate ``value * mm``, so multiply by
``0.1`` (:func:`per_cm_to_per_mm`) before projecting.

Reference values at the 70 keV effective energy (ICRU-44 compositions, NIST-type tables):

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
mg I per mL and the iodine mass attenuation ``(mu/rho)_I = 5.02 cm^2/g`` at 70 keV
(8 / 10 / 12 mg/mL -> 264 / 316 / 368 HU).

Effective-energy model (documented simplification, valid for 50-90 keV):

* water: 0.2059 / 0.1929 / 0.1837 /cm at 60 / 70 / 80 keV, interpolated linearly in
  ``log mu`` vs ``log E`` (end segments extrapolated);
* every non-iodine material scales with the water curve, ``mu_t(E) = mu_t(70) mu_w(E) / mu_w(70)``,
  so its HU does not depend on the energy (Compton-dominated tissues; bone is under-estimated at
  low energy by this model);
* iodine follows a photo-electric power law above its K-edge (33.2 keV),
  ``(mu/rho)_I(E) = 5.02 (E / 70)^-2.7`` cm^2/g: lower energy gives brighter contrast.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np


REFERENCE_KEV = 70.0
"""Energy (keV) of the tabulated coefficients."""

WATER_CURVE_KEV: tuple[float, ...] = (60.0, 70.0, 80.0)
WATER_CURVE_MU: tuple[float, ...] = (0.2059, 0.1929, 0.1837)
"""Water attenuation (/cm) at :data:`WATER_CURVE_KEV`."""

IODINE_MASS_ATTENUATION_70KEV = 5.02
"""Iodine mass attenuation (cm^2/g) at 70 keV."""

IODINE_ENERGY_EXPONENT = -2.7
"""Exponent of the iodine power law ``(E / 70 keV)^exponent`` above the K-edge."""

ENERGY_RANGE_KEV: tuple[float, float] = (50.0, 90.0)
"""Energies (keV) the model accepts."""


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
class MaterialProperties:
    """Tabulated properties of one material.

    Attributes:
        density: g/cm^3.
        mu_70kev: linear attenuation at 70 keV in /cm, without iodine.
        reference_hu: HU stated in the reference table (for checks).
    """

    density: float
    mu_70kev: float
    reference_hu: float


MATERIAL_TABLE: dict[Material, MaterialProperties] = {
    Material.AIR: MaterialProperties(0.0012, 0.0002, -999.0),
    Material.WATER: MaterialProperties(1.00, 0.1929, 0.0),
    Material.BLOOD: MaterialProperties(1.06, 0.2037, 56.0),
    # Enhanced blood is blood plus iodine; its iodine content is a scan parameter.
    Material.ENHANCED_BLOOD: MaterialProperties(1.06, 0.2037, 56.0),
    Material.MYOCARDIUM: MaterialProperties(1.05, 0.2011, 43.0),
    Material.SOFT_TISSUE: MaterialProperties(1.06, 0.2031, 53.0),
    Material.ADIPOSE: MaterialProperties(0.95, 0.1781, -76.0),
    Material.LUNG: MaterialProperties(0.26, 0.0499, -741.0),
    Material.CORTICAL_BONE: MaterialProperties(1.92, 0.4935, 1559.0),
}

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


def _check_energy(kev: float) -> float:
    kev = float(kev)
    lo, hi = ENERGY_RANGE_KEV
    if not lo <= kev <= hi:
        raise ValueError(f"effective energy kev={kev} is outside the model range [{lo}, {hi}] keV")
    return kev


def water_mu(kev: float = REFERENCE_KEV) -> float:
    """Water attenuation (/cm) at the effective energy ``kev`` (log-log interpolation)."""
    log_e = np.log(_check_energy(kev))
    xs = np.log(WATER_CURVE_KEV)
    ys = np.log(WATER_CURVE_MU)
    seg = int(np.clip(np.searchsorted(xs, log_e) - 1, 0, len(xs) - 2))
    slope = (ys[seg + 1] - ys[seg]) / (xs[seg + 1] - xs[seg])
    return float(np.exp(ys[seg] + slope * (log_e - xs[seg])))


def iodine_mass_attenuation(kev: float = REFERENCE_KEV) -> float:
    """Iodine mass attenuation (cm^2/g) at ``kev`` from the power law anchored at 70 keV."""
    ratio = _check_energy(kev) / REFERENCE_KEV
    return IODINE_MASS_ATTENUATION_70KEV * ratio**IODINE_ENERGY_EXPONENT


def material_mu(material: Material | int, kev: float = REFERENCE_KEV, iodine_mg_ml: float = 0.0) -> float:
    """Linear attenuation (/cm) of ``material`` at ``kev``.

    Args:
        material: a :class:`Material`.
        kev: effective energy in keV.
        iodine_mg_ml: iodine concentration (mg I per mL) of :attr:`Material.ENHANCED_BLOOD`;
            ignored for the other materials.
    """
    material = Material(material)
    if iodine_mg_ml < 0:
        raise ValueError(f"iodine_mg_ml must be >= 0, got {iodine_mg_ml}")
    base = MATERIAL_TABLE[material].mu_70kev * water_mu(kev) / water_mu(REFERENCE_KEV)
    if material is Material.ENHANCED_BLOOD:
        base += iodine_mg_ml * 1e-3 * iodine_mass_attenuation(kev)
    return float(base)


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
