"""Attenuation table, HU conversion and energy model against the reference table
(shared/reference/heart-data-materials.md)."""

import numpy as np
import pytest

from fedsim_tf.anatomy import NAME_TO_INDEX
from fedsim_tf.physics import materials as m

# (material, mu at 70 keV in /cm, HU) copied from the reference table.
REFERENCE_ROWS = [
    (m.Material.WATER, 0.1929, 0.0),
    (m.Material.BLOOD, 0.2037, 56.0),
    (m.Material.MYOCARDIUM, 0.2011, 43.0),
    (m.Material.SOFT_TISSUE, 0.2031, 53.0),
    (m.Material.ADIPOSE, 0.1781, -76.0),
    (m.Material.LUNG, 0.0499, -741.0),
    (m.Material.CORTICAL_BONE, 0.4935, 1559.0),
    (m.Material.AIR, 0.0002, -999.0),
]


@pytest.mark.parametrize("material, mu, hu", REFERENCE_ROWS)
def test_tabulated_hu(material, mu, hu):
    assert m.material_mu(material) == pytest.approx(mu, abs=1e-6)
    # The table rounds to whole HU; air is -999 there and exactly -1000 by the formula.
    assert float(m.mu_to_hu(m.material_mu(material))) == pytest.approx(hu, abs=1.5)


@pytest.mark.parametrize("iodine, mu, hu", [(8, 0.244, 264), (10, 0.254, 316), (12, 0.264, 368)])
def test_enhanced_blood(iodine, mu, hu):
    value = m.material_mu(m.Material.ENHANCED_BLOOD, 70.0, iodine)
    assert value == pytest.approx(mu, abs=6e-4)
    assert float(m.mu_to_hu(value)) == pytest.approx(hu, abs=3)
    assert m.iodine_for_blood_hu(hu) == pytest.approx(iodine, abs=0.06)


def test_hu_mu_round_trip_and_formula():
    hu = np.array([[-1000.0, 0.0], [316.0, 1559.0]])
    mu = m.hu_to_mu(hu, 70.0)
    assert mu.shape == (2, 2)
    # HU = 1000 (mu - 0.1929) / (0.1929 - 0.0002) by hand for 316 HU.
    assert mu[1, 0] == pytest.approx(0.1929 + 0.316 * 0.1927, abs=1e-9)
    np.testing.assert_allclose(m.mu_to_hu(mu, 70.0), hu, atol=1e-9)


def test_water_curve_points_and_monotone():
    for kev, mu in zip((60.0, 70.0, 80.0), (0.2059, 0.1929, 0.1837)):
        assert m.water_mu(kev) == pytest.approx(mu, abs=1e-9)
    energies = np.linspace(50, 90, 9)
    values = [m.water_mu(e) for e in energies]
    assert all(a > b for a, b in zip(values, values[1:]))
    # Between 60 and 70 keV the interpolant lies between the two tabulated values.
    assert 0.1929 < m.water_mu(65.0) < 0.2059


def test_energy_model_tissue_hu_constant_iodine_brighter_at_low_energy():
    for kev in (55.0, 60.0, 80.0):
        assert float(m.mu_to_hu(m.material_mu(m.Material.ADIPOSE, kev), kev)) == pytest.approx(-76.8, abs=0.5)
    hu = [float(m.mu_to_hu(m.material_mu(m.Material.ENHANCED_BLOOD, k, 10.0), k)) for k in (60.0, 70.0, 80.0)]
    assert hu[0] > hu[1] > hu[2]
    # Iodine power law: at 60 keV, 5.02 * (60/70)^-2.7 = 7.63 cm^2/g.
    assert m.iodine_mass_attenuation(60.0) == pytest.approx(5.02 * (60 / 70) ** -2.7, rel=1e-12)
    assert m.iodine_mass_attenuation(60.0) == pytest.approx(7.63, abs=0.02)


def test_atlas_and_luts():
    lut = m.structure_lut(70.0, 10.0)
    assert lut.shape == (8,)
    assert lut[NAME_TO_INDEX["lv_myo"]] == pytest.approx(0.2011)
    for name in ("la", "lv", "ra", "rv", "aorta", "pa"):
        assert lut[NAME_TO_INDEX[name]] == pytest.approx(0.2539, abs=1e-4)
    table = m.attenuation_lut(70.0, 10.0)
    assert table[m.Material.CORTICAL_BONE] == pytest.approx(0.4935)
    assert m.per_cm_to_per_mm(table)[m.Material.WATER] == pytest.approx(0.01929)


@pytest.mark.parametrize("call", [lambda: m.water_mu(120.0), lambda: m.material_mu(m.Material.BLOOD, 70.0, -1.0),
                                  lambda: m.iodine_for_blood_hu(0.0)])
def test_bad_input(call):
    with pytest.raises(ValueError):
        call()
