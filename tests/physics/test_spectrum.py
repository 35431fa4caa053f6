"""Tube spectra and polychromatic line integrals against hand calculations and published data."""

import numpy as np
import pytest

from fedsim_tf.physics.materials import Material, mu_curve, water_mu
from fedsim_tf.physics.polychromatic import PolychromaticScanner, basis_coefficients
from fedsim_tf.physics.spectrum import effective_water_mu, tube_spectrum
from fedsim_tf.physics.xray_data import element_mass_attenuation

# NIST XCOM / Hubbell & Seltzer mass attenuation (cm^2/g) at 40, 50, 60, 80 keV.
PUBLISHED_KEV = np.array([40.0, 50.0, 60.0, 80.0])
PUBLISHED_AL = np.array([0.5685, 0.3681, 0.2778, 0.2018])
PUBLISHED_CU = np.array([4.862, 2.613, 1.593, 0.7630])


def _published(values: np.ndarray, kev: float) -> float:
    """Log-log interpolation of a published table (independent of the code's element table)."""
    return float(np.exp(np.interp(np.log(kev), np.log(PUBLISHED_KEV), np.log(values))))


def test_kramers_shape_and_filtration_by_hand():
    bare = tube_spectrum(100.0, 0.0)
    e = bare.energies_kev
    assert e[0] == 10.5 and e[-1] == 99.5 and np.allclose(np.diff(e), 1.0)
    i40, i60 = int(np.searchsorted(e, 40.5)), int(np.searchsorted(e, 60.5))
    # Kramers photon number (kVp - E) / E at the bin centres 40.5 and 60.5 keV
    assert bare.photons[i40] / bare.photons[i60] == pytest.approx((59.5 / 40.5) / (39.5 / 60.5), rel=1e-12)
    filtered = tube_spectrum(100.0, 3.0, 0.2)
    ratio = filtered.photons / bare.photons  # exp(-filtration), up to the normalisation
    assert np.all(np.diff(ratio) > 0)  # filtration hardens: low energies lose most
    # 3 mm Al (2.699 g/cm3) and 0.2 mm Cu (8.96 g/cm3) with the published coefficients
    exponent = [_published(PUBLISHED_AL, k) * 2.699 * 0.3 + _published(PUBLISHED_CU, k) * 8.96 * 0.02
                for k in (40.5, 60.5)]
    assert ratio[i40] / ratio[i60] == pytest.approx(np.exp(exponent[1] - exponent[0]), rel=0.01)
    assert filtered.mean_energy_kev > bare.mean_energy_kev


def test_effective_water_attenuation_hardens_with_path():
    spectrum = tube_spectrum(120.0, 6.0, 0.2)
    short, long = effective_water_mu(spectrum, 50.0), effective_water_mu(spectrum, 300.0)
    assert long < short  # the beam hardens along the path
    # bounded by monochromatic water at the tube voltage and at the spectrum's lowest energy
    assert water_mu(120.0) < long < short < water_mu(30.0)
    # -ln T by hand for 50 mm: sum over bins of q(E) exp(-mu(E) * 5 cm)
    q = spectrum.detected_weights
    mu = mu_curve(Material.WATER, spectrum.energies_kev)
    assert short == pytest.approx(-np.log((q * np.exp(-mu * 5.0)).sum()) / 5.0, rel=1e-12)


def test_basis_fit_reproduces_materials():
    kev = np.arange(40.0, 121.0)
    water_curve, iodine_curve = mu_curve(Material.WATER, kev), 1e-3 * element_mass_attenuation("I", kev)
    for material, tolerance in [(Material.BLOOD, 0.002), (Material.MYOCARDIUM, 0.002), (Material.ADIPOSE, 0.01),
                                (Material.LUNG, 0.002), (Material.CORTICAL_BONE, 0.05)]:
        a, b = basis_coefficients(material)
        fit = a * water_curve + b * iodine_curve
        assert np.max(np.abs(fit / mu_curve(material, kev) - 1)) < tolerance, material
    assert basis_coefficients(Material.WATER) == pytest.approx((1.0, 0.0), abs=1e-9)
    assert basis_coefficients(Material.CORTICAL_BONE)[1] > 20.0  # bone looks like iodine-rich water


def test_polychromatic_table_and_beam_hardening():
    scanner = PolychromaticScanner(tube_spectrum(80.0, 3.0, 0.1))
    rng = np.random.default_rng(0)
    water = rng.uniform(0.0, 400.0, 2000)
    iodine = rng.uniform(-100.0, 2500.0, 2000)
    exact = scanner.exact_log_attenuation(water, iodine)
    np.testing.assert_allclose(scanner.log_attenuation(water, iodine), exact, rtol=2e-4, atol=1e-4)
    # hand calculation of one ray: 100 mm water + 10 mg/mL x 20 mm iodine
    q = scanner.spectrum.detected_weights
    e = scanner.spectrum.energies_kev
    mu = mu_curve(Material.WATER, e) * 10.0 + 1e-3 * element_mass_attenuation("I", e) * 10.0 * 2.0
    assert scanner.exact_log_attenuation(np.array(100.0), np.array(200.0)) == pytest.approx(
        -np.log((q * np.exp(-mu)).sum()), rel=1e-12)
    paths = np.array([50.0, 100.0, 200.0, 300.0])
    per_mm = scanner.exact_log_attenuation(paths, np.zeros(4)) / paths
    assert np.all(np.diff(per_mm) < 0)  # beam hardening: attenuation per mm falls with the path


@pytest.mark.parametrize("kwargs, match", [({"kvp": 200.0, "aluminium_mm": 2.0}, "kvp"),
                                           ({"kvp": 100.0, "aluminium_mm": -1.0}, "filtration")])
def test_bad_spectra(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tube_spectrum(**kwargs)
