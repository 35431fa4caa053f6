"""FDK reconstructions of the 3D Shepp-Logan phantom against its true 0.2 brain density."""

import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from pyronn_ops.analytic import analytic_ellipsoid_projection
from pyronn_ops.fdk import fdk_reconstruction, fdk_weights, filter_sinogram
from pyronn_ops.filters import filter_kernel
from pyronn_ops.geometry import GeometryCone3D
from pyronn_ops.phantoms import Ellipsoid, shepp_logan_3d, shepp_logan_ellipsoids
from pyronn_ops.trajectory import circular_trajectory_3d
from pyronn_ops.weights import cosine_weights_3d

SHAPE, VOXEL = (64, 64, 64), 1.5
DETECTOR, PIXEL = (80, 112), 2.0  # [H, W]


def _geometry(views: int, angular_range: float) -> GeometryCone3D:
    geometry = GeometryCone3D(SHAPE, (VOXEL,) * 3, DETECTOR, (PIXEL, PIXEL), views, angular_range, 1200.0, 750.0)
    geometry.set_trajectory(circular_trajectory_3d(geometry))
    return geometry


def _brain_mask() -> np.ndarray:
    """Voxels of the central 8 slices whose whole 5x5x5 neighbourhood has density 0.2."""
    phantom = shepp_logan_3d(SHAPE)
    low = ndimage.minimum_filter(phantom, size=5, mode="constant", cval=0.0)
    high = ndimage.maximum_filter(phantom, size=5, mode="constant", cval=0.0)
    mask = (np.abs(low - 0.2) < 1e-6) & (np.abs(high - 0.2) < 1e-6)
    mask[:28] = False
    mask[36:] = False
    assert mask.sum() > 3000
    return mask


def _exact_sinogram(geometry: GeometryCone3D) -> np.ndarray:
    ellipsoids = shepp_logan_ellipsoids(geometry.volume_shape, geometry.volume_spacing)
    return analytic_ellipsoid_projection(ellipsoids, geometry)[None].astype(np.float32)


@pytest.fixture(scope="module")
def full_scan() -> tuple[GeometryCone3D, np.ndarray, np.ndarray]:
    geometry = _geometry(180, 2 * math.pi)
    sinogram = _exact_sinogram(geometry)
    return geometry, sinogram, fdk_reconstruction(sinogram, geometry).numpy()[0]


def test_full_scan_recovers_brain_density(full_scan) -> None:
    geometry, _, reconstruction = full_scan
    assert reconstruction.shape == SHAPE
    assert reconstruction[_brain_mask()].mean() == pytest.approx(0.198, abs=0.004)
    # For a full 2 pi scan the pre-weights are PYRO-NN's: cosine weights only.
    np.testing.assert_allclose(fdk_weights(geometry)[7], cosine_weights_3d(geometry), rtol=1e-6)


def test_head_ram_lak_sentinel_is_lower(full_scan) -> None:
    geometry, sinogram, _ = full_scan
    head = fdk_reconstruction(sinogram, geometry, filter="ram_lak_fft").numpy()[0]
    assert 0.155 < head[_brain_mask()].mean() < 0.175  # about 0.165: zero-DC kernel without padding


def test_short_scan_with_parker_matches_full_scan(full_scan) -> None:
    fan = math.atan(DETECTOR[1] / 2 * PIXEL / 1200.0)  # widest column (principal point at W/2)
    views = 96
    geometry = _geometry(views, math.pi + 2 * fan + 1e-6)
    short = fdk_reconstruction(_exact_sinogram(geometry), geometry, short_scan=True).numpy()[0]
    mask = _brain_mask()
    assert short[mask].mean() == pytest.approx(0.2, abs=0.006)
    assert short[mask].mean() == pytest.approx(full_scan[2][mask].mean(), abs=0.005)


def test_filter_sinogram_is_circular_convolution_with_spatial_kernel() -> None:
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(2, 3, 4, 10))
    du = 0.8
    for length in (10, 32):  # no padding, zero padding to 32
        taps = np.array([min(k, length - k) for k in range(length)])
        spatial = np.where(taps == 0, 0.25, np.where(taps % 2 == 1, -1.0 / (math.pi**2 * np.maximum(taps, 1) ** 2), 0))
        spatial /= du**2
        padded = np.concatenate([rows, np.zeros(rows.shape[:-1] + (length - 10,))], axis=-1)
        expected = np.zeros_like(padded)
        for i in range(length):
            for j in range(length):
                expected[..., i] += padded[..., j] * spatial[(i - j) % length]
        got = filter_sinogram(rows.astype(np.float32), filter_kernel("ram_lak", length, du)).numpy()
        np.testing.assert_allclose(got, expected[..., :10], atol=2e-5 * np.abs(expected).max())


def test_fdk_in_tf_function_reconstructs_sphere() -> None:
    geometry = GeometryCone3D((24, 24, 24), (4.0,) * 3, (40, 56), (4.0, 4.0), 60, 2 * math.pi, 1200.0, 750.0)
    geometry.set_trajectory(circular_trajectory_3d(geometry))
    sinogram = analytic_ellipsoid_projection([Ellipsoid((0, 0, 0), (30, 30, 30), density=0.5)], geometry)
    reconstruct = tf.function(lambda s: fdk_reconstruction(s, geometry, padding="pow2", window="hann"))
    volume = reconstruct(tf.constant(sinogram[None], tf.float32)).numpy()[0]
    assert volume[10:14, 10:14, 10:14].mean() == pytest.approx(0.5, rel=0.03)
    assert abs(volume[:2].mean()) < 0.02  # outside the sphere
    with pytest.raises(ValueError, match="sinogram"):
        fdk_reconstruction(sinogram, geometry)  # missing batch axis


@pytest.mark.slow
def test_fdk_of_forward_projected_phantom() -> None:
    from pyronn_ops.ops import cone_projection3d

    geometry = _geometry(180, 2 * math.pi)
    sinogram = cone_projection3d(shepp_logan_3d(SHAPE)[None], geometry)
    mask = _brain_mask()
    assert fdk_reconstruction(sinogram, geometry).numpy()[0][mask].mean() == pytest.approx(0.198, abs=0.004)
    head = fdk_reconstruction(sinogram, geometry, filter="ram_lak_fft").numpy()[0]
    assert 0.155 < head[mask].mean() < 0.175
