"""X-ray tube spectra: a filtered bremsstrahlung model with the energy weighting of a CT detector.

Model (documented simplification):

* bremsstrahlung of a thick tungsten target by Kramers' law: photons per keV
  ``N(E) ~ (kVp - E) / E`` for ``E < kVp``; the tungsten K lines (58-69 keV, a few per cent of
  the photons above 80 kVp) and the anode's self-absorption are not modelled;
* filtration by aluminium and copper (inherent plus added filters),
  ``N(E) exp(-mu_Al(E) t_Al - mu_Cu(E) t_Cu)`` with the tabulated cross sections of
  :mod:`fedsim_tf.physics.xray_data`;
* an energy-integrating detector that absorbs every photon: the signal of a photon is
  proportional to its energy, so the detected weight of energy ``E`` is ``E N(E)``.

Spectra are sampled in 1 keV bins (bin centres) from 10 keV, the bottom of the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsim_tf.physics.materials import Material, mu_curve
from fedsim_tf.physics.xray_data import TABLE_RANGE_KEV, element_mass_attenuation

ALUMINIUM_DENSITY = 2.699
"""g/cm^3."""
COPPER_DENSITY = 8.96
"""g/cm^3."""
BIN_KEV = 1.0


@dataclass(frozen=True)
class XraySpectrum:
    """Photon spectrum of a filtered tube.

    Attributes:
        kvp: tube voltage (kV).
        energies_kev: ``(M,)`` bin centres, keV.
        photons: ``(M,)`` relative number of photons per bin (sums to 1).
    """

    kvp: float
    energies_kev: np.ndarray
    photons: np.ndarray

    @property
    def detected_weights(self) -> np.ndarray:
        """``(M,)`` share of the energy-integrating detector's signal per bin (``E N(E)``,
        normalised to 1)."""
        energy = self.energies_kev * self.photons
        return energy / energy.sum()

    @property
    def mean_energy_kev(self) -> float:
        """Photon-number mean energy (keV)."""
        return float((self.energies_kev * self.photons).sum())

    def transmission(self, mu_per_cm: np.ndarray, path_cm: float) -> float:
        """Detected signal fraction behind ``path_cm`` of a material with attenuation
        ``mu_per_cm`` (``(M,)``, /cm at :attr:`energies_kev`)."""
        return float((self.detected_weights * np.exp(-np.asarray(mu_per_cm) * path_cm)).sum())


def tube_spectrum(kvp: float, aluminium_mm: float, copper_mm: float = 0.0) -> XraySpectrum:
    """Filtered Kramers spectrum of a tungsten tube (module docstring).

    Args:
        kvp: tube voltage in kV, in ``(20, 150]``.
        aluminium_mm: total aluminium (inherent plus added) filtration, mm.
        copper_mm: added copper filtration, mm.

    Returns:
        The spectrum in 1 keV bins from 10 keV to ``kvp``.

    Raises:
        ValueError: ``kvp`` outside the table range or negative filtration.
    """
    lo, hi = TABLE_RANGE_KEV
    if not lo + 10 < kvp <= hi:
        raise ValueError(f"kvp must be in ({lo + 10:g}, {hi:g}] kV, got {kvp}")
    if aluminium_mm < 0 or copper_mm < 0:
        raise ValueError(f"filtration must be >= 0 mm, got Al {aluminium_mm}, Cu {copper_mm}")
    energies = np.arange(lo + BIN_KEV / 2, kvp, BIN_KEV)
    photons = (kvp - energies) / energies
    photons = photons * np.exp(-ALUMINIUM_DENSITY * element_mass_attenuation("Al", energies) * aluminium_mm / 10.0)
    photons = photons * np.exp(-COPPER_DENSITY * element_mass_attenuation("Cu", energies) * copper_mm / 10.0)
    return XraySpectrum(float(kvp), energies, photons / photons.sum())


def effective_water_mu(spectrum: XraySpectrum, path_mm: float) -> float:
    """Mean attenuation (/cm) of water along ``path_mm``: ``-ln T(path) / path``. A scanner
    calibrated on a water phantom of that diameter maps this value to 0 HU."""
    if path_mm <= 0:
        raise ValueError(f"path_mm must be > 0, got {path_mm}")
    mu = mu_curve(Material.WATER, spectrum.energies_kev)
    return -np.log(spectrum.transmission(mu, path_mm / 10.0)) / (path_mm / 10.0)
