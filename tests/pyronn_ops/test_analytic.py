"""Analytic ellipsoid line integrals against hand chord formulas, invariances and the TF projector."""

import math

import numpy as np
import pytest

from pyronn_ops.analytic import analytic_ellipsoid_projection
from pyronn_ops.geometry import GeometryCone3D
from pyronn_ops.phantoms import Ellipsoid, voxelize_ellipsoids
from pyronn_ops.trajectory import circular_trajectory_3d

SID, SDD = 750.0, 1200.0


def _geometry(views: int = 8, detector=(64, 80), spacing=2.5, convention="pyronn-0.1", volume=(48, 48, 48), voxel=2.0):
    geometry = GeometryCone3D(volume, (voxel,) * 3, detector, (spacing, spacing), views, 2 * math.pi, SDD, SID)
    geometry.set_trajectory(circular_trajectory_3d(geometry, convention=convention))
    return geometry


def test_sphere_central_and_offset_rays() -> None:
    geometry = _geometry()
    radius, density = 40.0, 0.5
    sino = analytic_ellipsoid_projection([Ellipsoid((0, 0, 0), (radius,) * 3, density=density)], geometry)
    assert sino.shape == (8, 64, 80) and sino.dtype == np.float64
    # 0.1.0 principal point (W/2, H/2) = pixel (40, 32): the central ray through the isocentre.
    np.testing.assert_allclose(sino[:, 32, 40], 2 * radius * density, rtol=1e-12)
    for column in (45, 52, 30):
        gamma = math.atan((column - 40) * 2.5 / SDD)
        distance = SID * math.sin(gamma)  # distance of the ray from the sphere centre
        expected = 2 * math.sqrt(radius**2 - distance**2) * density
        np.testing.assert_allclose(sino[:, 32, column], expected, rtol=1e-10)
    # a ray passing beyond the sphere: gamma with SID sin(gamma) > r
    assert np.all(sino[:, 32, 0] == 0.0)


def test_oblique_ray_chord_hand_formula() -> None:
    geometry = _geometry(views=1)
    centre = np.array([10.0, -5.0, 8.0])
    radius = 30.0
    sino = analytic_ellipsoid_projection([Ellipsoid(centre, (radius,) * 3)], geometry)
    # view 0: source (750, 0, 0); pixel (u, v) -> point (SID - SDD, (u - 40) du, -(v - 32) dv)
    for u, v in ((40, 32), (44, 27), (37, 36)):
        source = np.array([SID, 0.0, 0.0])
        target = np.array([SID - SDD, (u - 40) * 2.5, -(v - 32) * 2.5])
        direction = (target - source) / np.linalg.norm(target - source)
        distance = np.linalg.norm(np.cross(centre - source, direction))
        assert sino[0, v, u] == pytest.approx(2 * math.sqrt(radius**2 - distance**2), rel=1e-10)


def test_invariances() -> None:
    geometry = _geometry(views=6, convention="pyronn-1.x")
    # A body of revolution about z at the isocentre looks the same from every view.
    spheroid = Ellipsoid((0, 0, 0), (30, 30, 45), density=0.02)
    sino = analytic_ellipsoid_projection([spheroid], geometry)
    np.testing.assert_allclose(sino, np.broadcast_to(sino[:1], sino.shape), atol=1e-6)  # sqrt near tangents
    # The same ellipsoid written with permuted axes and a matching rotation gives the same integrals.
    a = Ellipsoid((5, -3, 2), (10, 20, 30), density=1.5)
    quarter = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # columns: y, -x, z
    b = Ellipsoid((5, -3, 2), (20, 10, 30), rotation=quarter, density=1.5)
    np.testing.assert_allclose(
        analytic_ellipsoid_projection([a], geometry), analytic_ellipsoid_projection([b], geometry), atol=1e-9
    )
    # Additivity: two ellipsoids together equal the sum of each, and density scales linearly.
    both = analytic_ellipsoid_projection([a, spheroid], geometry)
    np.testing.assert_allclose(both, analytic_ellipsoid_projection([a], geometry) + sino, atol=1e-9)


def test_forward_projector_matches_analytic_ellipsoid() -> None:
    from pyronn_ops.ops import cone_projection3d

    geometry = _geometry(views=24)
    rotation = np.array(  # axes tilted about z by 30 degrees then about x by 20 degrees
        [
            [math.cos(0.5236), -math.sin(0.5236) * math.cos(0.349), math.sin(0.5236) * math.sin(0.349)],
            [math.sin(0.5236), math.cos(0.5236) * math.cos(0.349), -math.cos(0.5236) * math.sin(0.349)],
            [0.0, math.sin(0.349), math.cos(0.349)],
        ]
    )
    shape = Ellipsoid((6.0, -4.0, 3.0), (30.0, 18.0, 24.0), rotation=rotation, density=1.0)
    volume = voxelize_ellipsoids([shape], geometry.volume_shape, geometry.volume_spacing)
    projected = cone_projection3d(volume[None], geometry).numpy()[0].astype(np.float64)
    exact = analytic_ellipsoid_projection([shape], geometry)
    mass_ratio = projected.sum(axis=(1, 2)) / exact.sum(axis=(1, 2))
    np.testing.assert_allclose(mass_ratio, 1.0, atol=0.005)
    rows, columns = np.mgrid[: exact.shape[1], : exact.shape[2]]
    for p in range(exact.shape[0]):
        for grid in (rows, columns):
            centroid = np.sum(grid * projected[p]) / projected[p].sum()
            assert abs(centroid - np.sum(grid * exact[p]) / exact[p].sum()) < 0.05
    assert np.linalg.norm(projected - exact) / np.linalg.norm(exact) <= 0.06
