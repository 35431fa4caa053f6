"""Cosine and Parker weights against hand values and the geometry of conjugate rays."""

import math

import numpy as np
import pytest

from pyronn_ops.geometry import GeometryCone3D
from pyronn_ops.trajectory import circular_trajectory_3d
from pyronn_ops.weights import cosine_weights_3d, parker_weight, parker_weights_3d, scan_angles


def _geometry(views: int, angular_range: float, convention: str = "pyronn-0.1") -> GeometryCone3D:
    geometry = GeometryCone3D((16, 16, 16), (2, 2, 2), (8, 80), (2.5, 2.5), views, angular_range, 1200.0, 750.0)
    geometry.set_trajectory(circular_trajectory_3d(geometry, convention=convention))
    return geometry


def test_cosine_weights_centre_and_corner() -> None:
    geometry = GeometryCone3D((4, 4, 4), (1, 1, 1), (5, 7), (2.0, 3.0), 4, 2 * math.pi, 100.0, 60.0)
    weights = cosine_weights_3d(geometry)
    assert weights.shape == (5, 7) and weights.dtype == np.float32
    assert weights[2, 3] == 1.0
    # corner pixel: u = 3 * 3 mm = 9 mm, v = 2 * 2 mm = 4 mm
    assert weights[0, 0] == pytest.approx(100.0 / math.sqrt(100.0**2 + 81.0 + 16.0), rel=1e-6)
    assert weights[4, 6] == weights[0, 0] == weights[0, 6]


def test_parker_conjugate_rays_sum_to_one() -> None:
    rng = np.random.default_rng(0)
    delta = 0.2
    gamma = rng.uniform(-delta, delta, 5000)
    beta = rng.uniform(0.0, math.pi + 2 * delta, 5000)
    forward = parker_weight(beta + math.pi + 2 * gamma, -gamma, delta)
    backward = parker_weight(beta - math.pi + 2 * gamma, -gamma, delta)
    np.testing.assert_allclose(parker_weight(beta, gamma, delta) + forward + backward, 1.0, atol=1e-12)
    assert parker_weight(np.array([-0.01, math.pi + 2 * delta + 0.01]), 0.0, delta) == pytest.approx([0, 0])
    # hand values: beta = (delta - gamma) is halfway up the rise, sin^2(pi/8)
    assert parker_weight(0.1, 0.05, delta) == pytest.approx(math.sin(math.pi / 4 * 0.1 / 0.15) ** 2)


@pytest.mark.parametrize("convention", ["pyronn-0.1", "pyronn-1.x"])
def test_parker_weights_3d_conjugates_from_projection_matrices(convention: str) -> None:
    fan = math.atan(40 * 2.5 / 1200.0)  # widest column of the 0.1.0 detector (principal point W/2)
    views = 240
    geometry = _geometry(views, math.pi + 2 * fan + 1e-6, convention)
    weights = parker_weights_3d(geometry)[:, 0, :].astype(np.float64)
    assert weights.shape == (views, 80)
    middle = views // 2
    np.testing.assert_array_equal(weights[middle - 5 : middle + 5], 1.0)

    # Independent check: follow each ray to the other end of its chord on the source circle.
    matrices = geometry.projection_matrices_float64
    sources = np.array([-np.linalg.solve(m[:, :3], m[:, 3]) for m in matrices])
    phi = np.unwrap(np.arctan2(sources[:, 1], sources[:, 0]))
    direction = np.sign(phi[1] - phi[0])
    step = abs(phi[1] - phi[0])
    # Transitions narrower than a view step (|gamma| near the fan edge) cannot be interpolated:
    # sample columns with |gamma| <= fan / 2; the scan ends at views * step with weight 0.
    ended = np.concatenate([weights, np.zeros((1, 80))])
    rng = np.random.default_rng(1)
    checked = 0
    early = rng.integers(0, 14, 200)  # the first 2 * fan of the scan: rays measured twice
    for view, column in zip(np.concatenate([early, rng.integers(0, views, 200)]), rng.integers(20, 61, 400)):
        ray = np.linalg.solve(matrices[view][:, :3], [column, 3.5, 1.0])[:2]
        source = sources[view, :2]
        other = source - 2 * (source @ ray) / (ray @ ray) * ray
        beta_c = ((math.atan2(other[1], other[0]) - phi[0]) * direction) % (2 * math.pi)
        low = int(beta_c // step)
        if low >= views:
            assert weights[view, column] == pytest.approx(1.0, abs=0.03)
            continue
        pair = []
        for neighbour in (low, low + 1):
            projected = matrices[min(neighbour, views - 1)] @ np.append(sources[view], 1.0)
            u = projected[0] / projected[2]
            pair.append(np.interp(u, np.arange(80), ended[neighbour]))
        conjugate = pair[0] + (beta_c / step - low) * (pair[1] - pair[0])
        assert weights[view, column] + conjugate == pytest.approx(1.0, abs=0.03)
        checked += 1
    assert checked > 150


def test_scan_angles_follow_rotation_direction() -> None:
    for convention in ("pyronn-0.1", "pyronn-1.x"):
        beta, step = scan_angles(_geometry(12, math.pi, convention))
        np.testing.assert_allclose(beta, np.arange(12) * math.pi / 12, atol=1e-12)
        assert step == pytest.approx(math.pi / 12)


def test_parker_rejects_too_short_scan() -> None:
    with pytest.raises(ValueError, match="angular_range"):
        parker_weights_3d(_geometry(90, math.pi))
