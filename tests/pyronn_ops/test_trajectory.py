"""circular_trajectory_3d against hand-expanded closed forms and geometric properties."""

import math

import numpy as np
import pytest

from pyronn_ops import GeometryCone3D, circular_trajectory_3d

SDD, SID = 1200.0, 750.0


def geometry(views=7, angular_range=2 * math.pi):
    return GeometryCone3D((9, 11, 13), (1.0, 0.8, 1.2), (20, 30), (1.5, 2.5), views, angular_range, SDD, SID)


def closed_form(beta, convention, height=20, width=30, dv=1.5, du=2.5):
    """P = K [R | -R S] expanded by hand into its 12 entries."""
    c, s = math.cos(beta), math.sin(beta)
    fu, fv = SDD / du, SDD / dv
    if convention == "pyronn-0.1":
        u0, v0 = width / 2, height / 2
        return np.array(
            [[-fu * s - u0 * c, fu * c - u0 * s, 0.0, u0 * SID],
             [-v0 * c, -v0 * s, -fv, v0 * SID],
             [-c, -s, 0.0, SID]]
        )
    u0, v0 = (width - 1) / 2, (height - 1) / 2
    return np.array(
        [[fu * s - u0 * c, fu * c + u0 * s, 0.0, u0 * SID],
         [-v0 * c, v0 * s, -fv, v0 * SID],
         [-c, s, 0.0, SID]]
    )


@pytest.mark.parametrize("convention", ["pyronn-0.1", "pyronn-1.x"])
def test_matrices_match_closed_form(convention):
    g = geometry()
    matrices = circular_trajectory_3d(g, convention, dtype=np.float64)
    assert matrices.shape == (7, 3, 4) and matrices.dtype == np.float64
    for p in range(7):
        np.testing.assert_allclose(matrices[p], closed_form(2 * math.pi * p / 7, convention), rtol=0, atol=1e-9)
    as_float32 = circular_trajectory_3d(g, convention)
    assert as_float32.dtype == np.float32
    np.testing.assert_allclose(as_float32, matrices, rtol=1e-6)


@pytest.mark.parametrize("convention, centre", [("pyronn-0.1", (15.0, 10.0)), ("pyronn-1.x", (14.5, 9.5))])
def test_isocentre_projects_to_principal_point_and_depths_positive(convention, centre):
    g = geometry(views=5, angular_range=[0.2, 3.0])
    matrices = circular_trajectory_3d(g, convention, dtype=np.float64)
    projected = matrices @ np.array([0.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(projected[:, :2] / projected[:, 2:], np.tile(centre, (5, 1)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(matrices[:, 2, :3], axis=1), 1.0, atol=1e-12)
    # every voxel centre is in front of the source, at a depth within SID +- the volume radius
    k, j, i = np.meshgrid(*[np.arange(n) for n in g.volume_shape], indexing="ij")
    world = np.stack([g.volume_origin[2 - a] + idx * g.volume_spacing[2 - a] for a, idx in enumerate((i, j, k))], -1)
    depth = np.einsum("pc,zyxc->pzyx", matrices[:, 2, :3], world) + matrices[:, 2, 3, None, None, None]
    radius = np.linalg.norm((np.array(g.volume_shape) - 1) / 2 * g.volume_spacing)
    assert depth.min() > SID - radius - 1e-9 and depth.max() < SID + radius + 1e-9


@pytest.mark.parametrize("convention, sign", [("pyronn-0.1", 1.0), ("pyronn-1.x", -1.0)])
def test_source_position_and_rotation_sense(convention, sign):
    g = geometry(views=4)
    matrices = circular_trajectory_3d(g, convention, dtype=np.float64)
    for p, beta in enumerate(g.angles):
        source = -np.linalg.solve(matrices[p, :, :3], matrices[p, :, 3])  # camera centre: P (S, 1) = 0
        np.testing.assert_allclose(source, SID * np.array([math.cos(beta), sign * math.sin(beta), 0.0]), atol=1e-9)
    # a point above the isocentre (+z) appears at smaller row index v (v grows towards -z)
    above = matrices[0] @ np.array([0.0, 0.0, 10.0, 1.0])
    assert above[1] / above[2] < matrices[0, 1, 3] / matrices[0, 2, 3]


def test_unknown_convention():
    with pytest.raises(ValueError, match="convention"):
        circular_trajectory_3d(geometry(), "pyronn-2.0")
