"""Phantoms against hand-evaluated points of the published Shepp-Logan table and exact volumes."""

import math

import numpy as np
import pytest

from pyronn_ops.phantoms import Ellipsoid, cube, ellipsoid, shepp_logan_3d, shepp_logan_ellipsoids, sphere


def test_shepp_logan_values_at_known_points() -> None:
    volume = shepp_logan_3d((101, 101, 101))  # normalised coordinate of index i: (i - 50) / 50
    assert volume.shape == (101, 101, 101) and volume.dtype == np.float32
    expected = {
        (50, 50, 50): 0.2,  # centre: 1 - 0.8
        (50, 94, 50): 1.0,  # y = 0.88: inside the skull (0.92), outside the brain (-0.0184 + 0.874)
        (50, 6, 50): 0.2,  # y = -0.88: inside the brain (down to -0.8924)
        (50, 50, 61): 0.0,  # x = 0.22: centre of the right -0.2 ellipsoid
        (50, 50, 32): 0.0,  # x = -0.36: inside the left one (rotated, a = 0.16)
        (50, 50, 68): 0.2,  # x = +0.36: outside the right one (a = 0.11)
        (62, 55, 50): 0.3,  # (0, 0.1, 0.24): small 0.1 ellipsoid above the centre
        (42, 67, 50): 0.3,  # (0, 0.34, -0.16): the 0.1 ellipsoid at y = 0.35
        (0, 0, 0): 0.0,
    }
    for index, value in expected.items():
        assert volume[index] == pytest.approx(value, abs=1e-6), index


def test_shepp_logan_world_ellipsoids_anisotropic() -> None:
    shape, spacing = (33, 41, 37), (1.5, 1.0, 2.0)
    scale = np.array([(37 - 1) / 2 * 2.0, (41 - 1) / 2 * 1.0, (33 - 1) / 2 * 1.5])  # mm per unit, xyz
    ellipsoids = shepp_logan_ellipsoids(shape, spacing)
    assert len(ellipsoids) == 10
    assert [e.density for e in ellipsoids] == pytest.approx([1, -0.8, -0.2, -0.2] + [0.1] * 6)
    # volume = a b c * scale_x scale_y scale_z for the outer shell and the rotated ellipsoid 3
    assert np.prod(ellipsoids[0].semi_axes) == pytest.approx(0.69 * 0.92 * 0.81 * np.prod(scale), rel=1e-12)
    assert np.prod(ellipsoids[2].semi_axes) == pytest.approx(0.11 * 0.31 * 0.22 * np.prod(scale), rel=1e-12)
    # Ellipsoid 3: centre (0.22, 0, 0), b = 0.31 along (sin phi, cos phi, 0) with phi = -pi/10.
    third = ellipsoids[2]
    b_axis = np.array([math.sin(-math.pi / 10), math.cos(-math.pi / 10), 0.0])
    for distance, inside in ((0.30, True), (0.32, False)):
        point = (np.array([0.22, 0.0, 0.0]) + distance * b_axis) * scale
        assert (np.linalg.norm(third.shape_matrix @ (point - third.center)) <= 1.0) == inside


def test_sphere_volume_and_zyx_position() -> None:
    ball = sphere((40, 40, 40), (20, 20, 20), 10.0, value=2.0)
    assert np.sum(ball) / 2.0 == 4169  # lattice points with |p| <= 10
    assert np.sum(ball) / 2.0 == pytest.approx(4 / 3 * math.pi * 10**3, rel=0.01)
    off = sphere((20, 30, 40), (5, 10, 30), 3.0)
    assert np.sum(off) == 123  # lattice points with |p| <= 3
    assert np.argwhere(off).mean(axis=0) == pytest.approx([5, 10, 30])
    with pytest.raises(ValueError, match="radius"):
        sphere((8, 8, 8), (4, 4, 4), (1, 2, 3))


def test_ellipsoid_euler_rotation_and_cube() -> None:
    # semi-axes (z, y, x) = (2, 3, 8); phi = pi/2 about z turns the long x axis onto y
    rotated = ellipsoid((30, 30, 30), (15, 15, 15), (2, 3, 8), euler=(math.pi / 2, 0, 0))
    occupied = np.argwhere(rotated)
    assert np.ptp(occupied, axis=0).tolist() == [4, 16, 6]
    box = cube((20, 20, 20), (10, 10.5, 10), (4, 5, 3), value=3.0)
    occupied = np.argwhere(box)
    assert occupied.min(axis=0).tolist() == [8, 8, 9] and occupied.max(axis=0).tolist() == [11, 12, 11]
    assert np.sum(box) == 3.0 * 4 * 5 * 3
    with pytest.raises(ValueError, match="shape"):
        cube((20, 20), (1, 1, 1), 2)


def test_ellipsoid_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="semi_axes"):
        Ellipsoid(center=(0, 0, 0), semi_axes=(1, -1, 1))
    with pytest.raises(ValueError, match="rotation"):
        Ellipsoid(center=(0, 0, 0), semi_axes=(1, 1, 1), rotation=np.ones((3, 3)))
