"""Pose: rotation-vector convention, round trips, centre, and exact one-voxel shifts."""

from __future__ import annotations

import numpy as np
import pytest

from fedsim_tf.grid import Grid
from fedsim_tf.shape.pose import apply_pose, params_from_matrix, pose_matrix, pose_points, rotation_matrix
from fedsim_tf.shape.voxelize import voxelize
from tests.shape.toy_heart import mesh_volume, toy_heart

CENTRE = np.array([3.0, -7.5, 11.25])


def test_rotation_convention_hand_computed() -> None:
    # +90 degrees about +z (right hand): x -> y, y -> -x.
    r = rotation_matrix(np.array([0.0, 0.0, np.pi / 2]))
    np.testing.assert_allclose(r @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(r @ [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], atol=1e-15)
    # 120 degrees about (1, 1, 1) cycles the axes x -> y -> z -> x.
    r = rotation_matrix(np.full(3, 2 * np.pi / 3 / np.sqrt(3)))
    np.testing.assert_allclose(r, [[0, 0, 1], [1, 0, 0], [0, 1, 0]], atol=1e-15)
    # Tiny angles: first order R = I + [r]_x.
    r = rotation_matrix(np.array([1e-9, -2e-9, 3e-9]))
    np.testing.assert_allclose(r, np.eye(3) + [[0, -3e-9, -2e-9], [3e-9, 0, -1e-9], [2e-9, 1e-9, 0]], atol=1e-17)


def test_matrix_is_similarity_about_centre() -> None:
    params = np.array([0.3, -0.2, 0.5, 4.0, -2.0, 1.5, np.log(1.25)])
    m = pose_matrix(params, CENTRE)
    # The centre goes to centre + t; distances scale by exp(log_s).
    np.testing.assert_allclose(m[:3, :3] @ CENTRE + m[:3, 3], CENTRE + params[3:6], atol=1e-12)
    a, b = np.array([10.0, 2.0, -4.0]), np.array([-3.0, 8.0, 5.0])
    pa, pb = pose_points(np.stack([a, b]), params, CENTRE)
    assert np.linalg.norm(pa - pb) == pytest.approx(1.25 * np.linalg.norm(a - b), rel=1e-13)
    np.testing.assert_allclose(np.linalg.det(m[:3, :3]), 1.25**3, rtol=1e-13)
    np.testing.assert_array_equal(m[3], [0, 0, 0, 1])


def test_round_trip_params_matrix_params() -> None:
    rng = np.random.default_rng(0)
    axes = rng.normal(size=(50, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.concatenate([[0.0, 1e-12, 1e-6, 3.1, np.pi - 1e-4], rng.uniform(0, np.pi - 0.01, 45)])
    params = np.concatenate(
        [axes * angles[:, None], rng.normal(scale=20.0, size=(50, 3)), rng.normal(scale=0.2, size=(50, 1))],
        axis=1,
    )
    matrices = pose_matrix(params, CENTRE)  # batched
    for p, m in zip(params, matrices):
        np.testing.assert_allclose(m, pose_matrix(p, CENTRE), atol=1e-14)
        np.testing.assert_allclose(params_from_matrix(m, CENTRE), p, rtol=0, atol=1e-10)


def test_params_from_matrix_rejects_non_similarities() -> None:
    reflect = np.diag([-1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="positive determinant"):
        params_from_matrix(reflect, CENTRE)
    shear = np.eye(4)
    shear[0, 1] = 0.3
    with pytest.raises(ValueError, match="not a similarity"):
        params_from_matrix(shear, CENTRE)
    with pytest.raises(ValueError, match="4x4"):
        params_from_matrix(np.eye(3), CENTRE)
    with pytest.raises(ValueError, match="size 7"):
        pose_matrix(np.zeros(6), CENTRE)
    with pytest.raises(ValueError, match="centre"):
        pose_matrix(np.zeros(7), np.zeros(2))


def test_apply_pose_volume_and_centre() -> None:
    heart = toy_heart()
    centre = heart.centre()
    params = np.array([0.4, 0.1, -0.3, 5.0, 0.0, -3.0, 0.1])
    posed = apply_pose(heart, params, centre)
    np.testing.assert_allclose(posed.centre(), centre + params[3:6], atol=1e-10)  # centre is a mean
    for before, after in zip(heart.structures, posed.structures):
        v0, v1 = mesh_volume(before.vertices, before.faces), mesh_volume(after.vertices, after.faces)
        assert v1 == pytest.approx(v0 * np.exp(0.3), rel=1e-12)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_one_voxel_translation_shifts_labels_by_one_voxel(axis: int) -> None:
    heart = apply_pose(toy_heart(), np.array([0.21, -0.13, 0.37, 0.0, 0.0, 0.0, 0.0]), np.zeros(3))
    grid = Grid.centred((36, 40, 44), (82.0, 88.0, 90.0), centre_mm=(1.0, 0.0, 4.0))
    spacing_xyz = grid.spacing_zyx[::-1]
    params = np.zeros(7)
    params[3 + axis] = spacing_xyz[axis]  # world axis x, y, z
    base = voxelize(heart, grid)
    shifted = voxelize(apply_pose(heart, params, heart.centre()), grid)
    array_axis = 2 - axis  # arrays are [z, y, x]
    n = grid.shape[array_axis]
    assert base.take([0, n - 1], axis=array_axis).max() == 0 and base.sum() > 5000  # all inside
    np.testing.assert_array_equal(
        shifted.take(range(1, n), axis=array_axis), base.take(range(0, n - 1), axis=array_axis)
    )
    assert shifted.take(0, axis=array_axis).max() == 0
