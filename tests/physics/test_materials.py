"""Attenuation from compositions against published reference values.

References (independent of the element table the code interpolates):

* NIST XCOM / Hubbell & Seltzer mass attenuation of liquid water (cm^2/g): 0.8096 (20 keV),
  0.3756 (30), 0.2683 (40), 0.2269 (50), 0.2059 (60), 0.1837 (80), 0.1707 (100), 0.1505 (150);
  water 0.193 /cm at 70 keV.
* The table of ``shared/reference/heart-data-materials.md`` (ICRU-44 tissues at 70 keV, mu to
  four decimals and whole HU; iodine 5.02 cm^2/g; enhanced blood 264 / 316 / 368 HU).

Tolerances: the code's table is the Elam database, which differs from XCOM by well under 0.5 %
for water (both use the same scattering data; photo-absorption differs by a few per cent at most,
and is a small share of water's attenuation at these energies); the reference table rounds mu to
4 decimals (+-0.00005 /cm) and HU to whole numbers.
"""

import numpy as np
import pytest

from fedsim_tf.anatomy import NAME_TO_INDEX
from fedsim_tf.physics import materials as m

XCOM_WATER = [(20.0, 0.8096), (30.0, 0.3756), (40.0, 0.2683), (50.0, 0.2269), (60.0, 0.2059), (80.0, 0.1837),
              (100.0, 0.1707), (150.0, 0.1505)]

# (material, mu at 70 keV in /cm, HU) from the reference table.
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


@pytest.mark.parametrize("kev, mass_mu", XCOM_WATER)
def test_water_matches_xcom(kev, mass_mu):
    assert m.water_mu(kev) == pytest.approx(mass_mu, rel=0.005)


def test_water_at_70_kev_is_xcoms_0193():
    assert m.water_mu(70.0) == pytest.approx(0.193, abs=0.0005)


@pytest.mark.parametrize("material, mu, hu", REFERENCE_ROWS)
def test_reference_table(material, mu, hu):
    # mu rounded to 4 decimals in the table: +-0.00005, plus 0.1 % for the database difference
    assert m.material_mu(material) == pytest.approx(mu, abs=0.00005 + 0.001 * mu)
    # whole HU in the table (air: -999 there, -1000 by the formula) and the mu rounding above
    assert float(m.mu_to_hu(m.material_mu(material))) == pytest.approx(hu, abs=2.0)


@pytest.mark.parametrize("iodine, mu, hu", [(8, 0.244, 264), (10, 0.254, 316), (12, 0.264, 368)])
def test_enhanced_blood(iodine, mu, hu):
    value = m.material_mu(m.Material.ENHANCED_BLOOD, 70.0, iodine)
    assert value == pytest.approx(mu, abs=6e-4)  # the table gives 3 decimals
    assert float(m.mu_to_hu(value)) == pytest.approx(hu, abs=3)
    assert m.iodine_for_blood_hu(hu) == pytest.approx(iodine, abs=0.06)
    assert m.iodine_mass_attenuation(70.0) == pytest.approx(5.02, rel=0.005)


def test_iodine_k_edge_and_energy_dependence():
    below, above = m.iodine_mass_attenuation(33.1), m.iodine_mass_attenuation(33.2)
    assert 5.0 < above / below < 6.0  # XCOM: 6.551 -> 36.33 cm^2/g across the K edge (ratio 5.55)
    hu = [float(m.mu_to_hu(m.material_mu(m.Material.ENHANCED_BLOOD, k, 10.0), k)) for k in (50.0, 70.0, 100.0)]
    assert hu[0] > hu[1] > hu[2]  # lower energy, brighter contrast
    bone = [float(m.mu_to_hu(m.material_mu(m.Material.CORTICAL_BONE, k), k)) for k in (50.0, 70.0, 100.0)]
    assert bone[0] > bone[1] > bone[2]


def test_hu_mu_round_trip_and_formula():
    hu = np.array([[-1000.0, 0.0], [316.0, 1559.0]])
    mu = m.hu_to_mu(hu, 70.0)
    mu_w, mu_a = m.water_mu(70.0), m.material_mu(m.Material.AIR, 70.0)
    assert mu[1, 0] == pytest.approx(mu_w + 0.316 * (mu_w - mu_a), abs=1e-12)  # the HU definition by hand
    np.testing.assert_allclose(m.mu_to_hu(mu, 70.0), hu, atol=1e-9)


def test_energy_of_water_mu_inverts_the_table():
    for kev, mass_mu in XCOM_WATER[1:-1]:
        assert m.energy_of_water_mu(mass_mu) == pytest.approx(kev, rel=0.01)


def test_atlas_and_luts():
    lut = m.structure_lut(70.0, 10.0)
    assert lut.shape == (8,)
    assert lut[0] == pytest.approx(0.1929, abs=1e-4)
    assert lut[NAME_TO_INDEX["lv_myo"]] == pytest.approx(0.2011, abs=1e-4)
    for name in ("la", "lv", "ra", "rv", "aorta", "pa"):
        assert lut[NAME_TO_INDEX[name]] == pytest.approx(0.254, abs=6e-4)
    table = m.attenuation_lut(70.0, 10.0)
    assert table[m.Material.CORTICAL_BONE] == pytest.approx(0.4935, abs=2e-4)
    assert m.per_cm_to_per_mm(0.1929) == pytest.approx(0.01929)


@pytest.mark.parametrize(
    "call, match",
    [(lambda: m.water_mu(200.0), "outside the model range"),
     (lambda: m.material_mu(m.Material.BLOOD, 70.0, -1.0), "iodine_mg_ml"),
     (lambda: m.iodine_for_blood_hu(0.0), "below unenhanced blood"),
     (lambda: m.energy_of_water_mu(50.0), "outside")],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
