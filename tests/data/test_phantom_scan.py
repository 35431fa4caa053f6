"""The phantom scanner chain: edge sharpness, beam-hardening cupping, sinogram upsampling (small preset,
noise-free; about 15 s)."""

import numpy as np
import pytest
from scipy.special import erf

from fedsim_tf.data import phantoms
from fedsim_tf.data.phantom_quality import edge_phantom, edge_width, water_cylinder
from fedsim_tf.data.phantom_scan import scan, upsample_sinogram
from fedsim_tf.data.scanners import SITE_NAMES, site_settings
from fedsim_tf.grid import Grid
from fedsim_tf.physics.materials import Material, material_mu, mu_curve, water_mu


def _small(site: str):
    return phantoms.small_settings(site_settings(site), 1)


def test_edge_width_of_an_analytic_edge():
    grid = Grid.centred((40, 48, 48), (80.0, 96.0, 96.0))
    normal = np.array([0.985, 0.1736, 0.05]) / np.linalg.norm([0.985, 0.1736, 0.05])
    sigma = 2.4  # mm: the 10-90 % width of a Gaussian-blurred step is 2 * 1.2816 sigma
    image = 100.0 * erf((grid.voxel_centres() @ normal) / (np.sqrt(2) * sigma))
    mask = np.ones(grid.shape, dtype=bool)
    assert edge_width(image, grid, normal, mask) == pytest.approx(2 * 1.2816 * sigma, abs=0.05)
    assert edge_width(-image, grid, normal, mask) == pytest.approx(2 * 1.2816 * sigma, abs=0.05)


@pytest.mark.parametrize("site", SITE_NAMES)
def test_blood_myocardium_edge_is_at_most_two_voxels(site):
    settings = _small(site)
    grid = phantoms.output_grid(settings)
    volume, normal = edge_phantom(grid, float(np.mean(settings.iodine_mg_ml)))
    image = scan(settings, [volume], None, np.random.default_rng(0), float("inf"))
    xyz = grid.voxel_centres()
    radius = 0.4 * min(settings.fov_mm[1:])
    central = (np.hypot(xyz[..., 0], xyz[..., 1]) < 0.7 * radius) & (np.abs(xyz[..., 2]) < settings.fov_mm[0] / 4)
    voxel = float(np.abs(normal) @ grid.spacing_zyx[::-1])
    width = edge_width(image, grid, normal, central) / voxel
    print(f"{site}: 10-90 % edge width {width:.2f} voxels")
    assert 0.8 < width <= 2.0


def _fbp_of_radial_profile(projection, radius: float, samples: np.ndarray) -> np.ndarray:
    """Parallel-beam FBP of a rotationally symmetric object, float64 NumPy: Ram-Lak filtering of
    ``projection(t)`` then ``f(r) = integral_0^pi q(r cos theta) d theta``."""
    step = 0.05
    t = np.arange(-1.6 * radius, 1.6 * radius + step / 2, step)
    k = np.arange(-len(t) + 1, len(t))
    kernel = np.zeros(len(k))
    kernel[k == 0] = 1 / (4 * step**2)
    odd = k % 2 == 1
    kernel[odd] = -1 / (np.pi**2 * k[odd] ** 2 * step**2)
    filtered = step * np.convolve(projection(t), kernel)[len(t) - 1 : 2 * len(t) - 1]
    theta = (np.arange(720) + 0.5) * np.pi / 720
    return np.array([np.interp(r * np.cos(theta), t, filtered).mean() * np.pi for r in samples])


@pytest.mark.parametrize("site", SITE_NAMES)
def test_water_cylinder_cupping_matches_a_polychromatic_calculation(site):
    settings = _small(site)
    grid = phantoms.output_grid(settings)
    radius = 0.45 * min(settings.fov_mm[1:])
    image = scan(settings, [water_cylinder(grid, radius)], None, np.random.default_rng(0), float("inf"))
    xyz = grid.voxel_centres()
    r = np.hypot(xyz[..., 0], xyz[..., 1])
    slab = np.abs(xyz[..., 2]) < settings.fov_mm[0] / 4
    centre, rim = slab & (r < 0.15 * radius), slab & (np.abs(r - 0.8 * radius) < 0.05 * radius)
    measured = float(image[centre].mean() - image[rim].mean())

    spectrum = settings.spectrum()
    weights, mu_per_mm = spectrum.detected_weights, mu_curve(Material.WATER, spectrum.energies_kev) / 10.0

    def polychromatic(t):
        chord = 2 * np.sqrt(np.clip(radius**2 - t**2, 0.0, None))
        return -np.log(np.exp(-np.outer(chord, mu_per_mm)) @ weights)

    mono = _fbp_of_radial_profile(lambda t: 0.02 * 2 * np.sqrt(np.clip(radius**2 - t**2, 0, None)), radius,
                                  np.array([0.0, 0.5 * radius]))
    np.testing.assert_allclose(mono, 0.02, rtol=0.01)  # the reference FBP itself is right
    radii_centre, radii_rim = np.linspace(0, 0.15, 8) * radius, np.linspace(0.75, 0.85, 8) * radius
    f = _fbp_of_radial_profile(polychromatic, radius, np.concatenate([radii_centre, radii_rim]))
    area = lambda values, radii: np.average(values, weights=radii + 1e-9)  # noqa: E731 (ring areas)
    kev = settings.kev
    per_hu = 1000.0 / (water_mu(kev) - material_mu(Material.AIR, kev))
    expected = (area(f[:8], radii_centre) - area(f[8:], radii_rim)) * 10.0 * per_hu
    print(f"{site}: cupping centre - rim {measured:.1f} HU, polychromatic calculation {expected:.1f} HU")
    assert expected < -5.0  # the centre reads darker: the beam hardens along the longer chords
    assert measured == pytest.approx(expected, abs=max(3.0, 0.15 * abs(expected)))


def test_upsample_sinogram_is_linear_interpolation():
    rng = np.random.default_rng(0)
    sparse = rng.normal(size=(1, 4, 3, 5)).astype(np.float32)
    full = upsample_sinogram(sparse, (8, 6, 10))
    np.testing.assert_array_equal(full[:, ::2, ::2, ::2], sparse)
    np.testing.assert_allclose(full[0, 1, 0, 0], (sparse[0, 0, 0, 0] + sparse[0, 1, 0, 0]) / 2)
    np.testing.assert_allclose(full[0, 7, 0, 0], (sparse[0, 3, 0, 0] + sparse[0, 0, 0, 0]) / 2)  # circular
    np.testing.assert_allclose(full[0, 0, 1, 3], (sparse[0, 0, 0, 1] + sparse[0, 0, 1, 2] + sparse[0, 0, 0, 2]
                                                  + sparse[0, 0, 1, 1]) / 4, rtol=1e-6)
    np.testing.assert_array_equal(full[0, 0, 5, 9], sparse[0, 0, 2, 4])  # past the last sample: its value
