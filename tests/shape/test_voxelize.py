"""Exact voxelisation: agreement with float64 winding numbers, volumes, precedence, affines."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from fedsim_tf.anatomy import NAME_TO_INDEX, STRUCTURE_NAMES
from fedsim_tf.grid import Grid
from fedsim_tf.shape.mesh import HeartMesh, StructureMesh
from fedsim_tf.shape.voxelize import (
    LABEL_PRECEDENCE,
    heart_mask,
    structure_occupancy,
    voxelize,
    voxelize_structure,
)
from tests.shape.toy_heart import ellipsoid, mesh_volume, toy_heart, winding_numbers

EMPTY = (np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))


def heart_of(**meshes: tuple[np.ndarray, np.ndarray]) -> HeartMesh:
    """HeartMesh with the given structures (vertices, faces) and the others empty."""
    return HeartMesh(tuple(StructureMesh(n, *meshes.get(n, EMPTY)) for n in STRUCTURE_NAMES))


def agreement(mesh: trimesh.Trimesh, grid: Grid) -> float:
    occ = voxelize_structure(StructureMesh("lv", mesh.vertices, mesh.faces), grid)
    w = winding_numbers(grid.voxel_centres().reshape(-1, 3), mesh.vertices, mesh.faces)
    ref = (np.abs(w) > 0.5).reshape(grid.shape)
    assert ref.sum() > 200  # the shape really is in the grid
    return float(np.mean(occ == ref))


@pytest.mark.parametrize(
    "mesh",
    [
        trimesh.creation.icosphere(subdivisions=2, radius=11.0).apply_translation([1.3, -0.7, 2.1]),
        trimesh.creation.torus(major_radius=10.0, minor_radius=4.0, major_sections=24, minor_sections=12).apply_transform(
            trimesh.transformations.rotation_matrix(0.7, [1.0, 0.4, 0.2])
        ),
        trimesh.creation.annulus(r_min=5.0, r_max=12.0, height=9.0, sections=24),
        trimesh.creation.box(extents=[18.0, 10.0, 7.0]).apply_transform(
            trimesh.transformations.rotation_matrix(0.5, [0.3, 1.0, -0.2])
        ),
    ],
    ids=["sphere", "torus", "annulus", "rotated_box"],
)
def test_matches_winding_number_reference(mesh: trimesh.Trimesh) -> None:
    grid = Grid.centred((20, 22, 24), (32.0, 34.0, 36.0), centre_mm=(0.2, -0.1, 0.3))
    assert agreement(mesh, grid) >= 0.999


def test_toy_heart_structures_match_reference() -> None:
    heart = toy_heart()
    grid = Grid.centred(20, 80.0, centre_mm=(0.0, 0.0, 4.0))
    occ = structure_occupancy(heart, grid)
    points = grid.voxel_centres().reshape(-1, 3)
    for channel, s in enumerate(heart.structures):
        ref = (np.abs(winding_numbers(points, s.vertices, s.faces)) > 0.5).reshape(grid.shape)
        assert np.mean(occ[channel] == ref) >= 0.999, s.name
        assert ref.sum() > 20


def test_rays_through_vertices_and_edges_octahedron() -> None:
    # Rows at integer y, z pass exactly through the vertices and along the edges in the planes
    # y = 0 and z = 0; no voxel centre lies on the surface, so the truth is analytic.
    v = np.array([[8.6, 0, 0], [-8.6, 0, 0], [0, 6, 0], [0, -6, 0], [0, 0, 6], [0, 0, -6]])
    octa = trimesh.convex.convex_hull(v)
    grid = Grid.centred((15, 15, 22), (15.0, 15.0, 22.0))  # x centres at +-0.5, +-1.5, ...
    pts = grid.voxel_centres()
    level = np.abs(pts[..., 0]) / 8.6 + np.abs(pts[..., 1]) / 6 + np.abs(pts[..., 2]) / 6
    assert np.min(np.abs(level - 1)) > 1e-3  # no voxel centre on the surface
    truth = level < 1
    assert np.array_equal(voxelize_structure(StructureMesh("lv", octa.vertices, octa.faces), grid), truth)


def test_half_open_rule_on_grid_aligned_box() -> None:
    # Every face of the box lies on voxel-centre planes: the perturbed ray (j + eps, k + eps^2)
    # and the "centre strictly past the crossing" rule give x in (-5, 5], y in [-5, 5), z in [-5, 5):
    # exactly 10^3 voxels, equal to the box volume in voxels.
    box = trimesh.creation.box(extents=[10.0, 10.0, 10.0])
    grid = Grid.centred(21, 21.0)  # integer voxel centres -10..10 mm
    occ = voxelize_structure(StructureMesh("lv", box.vertices, box.faces), grid)
    c = np.arange(-10, 11)
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    truth = (x > -5) & (x <= 5) & (y >= -5) & (y < 5) & (z >= -5) & (z < 5)
    assert np.array_equal(occ, truth)


def test_volume_matches_mesh_volume_at_128() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=45.0)
    stretch = np.diag([1.0, 0.8, 1.2])
    verts = sphere.vertices @ stretch + np.array([3.3, -2.1, 1.7])
    grid = Grid.centred(128, (128.0, 128.0, 128.0))
    occ = voxelize_structure(StructureMesh("lv", verts, sphere.faces), grid)
    expected = mesh_volume(verts, sphere.faces)  # mm^3, 1 mm^3 voxels
    assert abs(occ.sum() / expected - 1.0) < 0.005


def test_precedence_on_overlapping_spheres() -> None:
    myo = trimesh.creation.icosphere(subdivisions=3, radius=10.0)
    pool = trimesh.creation.icosphere(subdivisions=3, radius=8.0).apply_translation([6.0, 0.0, 0.0])
    heart = heart_of(lv_myo=(myo.vertices, myo.faces), lv=(pool.vertices, pool.faces))
    grid = Grid.centred(32, 32.0)
    labels = voxelize(heart, grid)
    p = grid.voxel_centres()
    d_myo = np.linalg.norm(p, axis=-1)
    d_pool = np.linalg.norm(p - [6.0, 0.0, 0.0], axis=-1)
    # Away (> 0.3 mm) from the polyhedral surfaces (icosphere radius error < 0.15 mm here).
    in_myo, in_pool = d_myo < 9.7, d_pool < 7.7
    out_myo, out_pool = d_myo > 10.3, d_pool > 8.3
    assert np.all(labels[in_pool] == NAME_TO_INDEX["lv"])  # includes the overlap
    assert np.all(labels[in_myo & out_pool] == NAME_TO_INDEX["lv_myo"])
    assert np.all(labels[out_myo & out_pool] == 0)
    assert np.sum(in_myo & in_pool) > 100 and np.sum(in_myo & out_pool) > 100
    assert np.array_equal(heart_mask(heart, grid), labels > 0)


def test_cavity_carved_and_full_precedence_order() -> None:
    # All seven structures on one sphere: the highest-precedence label wins everywhere;
    # with the LV pool inside the myocardium we get a wall of lv_myo around an lv core.
    grid = Grid.centred(24, 24.0)
    s = trimesh.creation.icosphere(subdivisions=2, radius=8.0)
    same = heart_of(**{n: (s.vertices, s.faces) for n in STRUCTURE_NAMES})
    labels = voxelize(same, grid)
    assert set(np.unique(labels)) == {0, NAME_TO_INDEX[LABEL_PRECEDENCE[-1]]}
    occ = structure_occupancy(same, grid)
    assert np.all(occ == occ[0]) and occ[0].sum() > 1000
    inner = trimesh.creation.icosphere(subdivisions=2, radius=5.0)
    shell = voxelize(heart_of(lv_myo=(s.vertices, s.faces), lv=(inner.vertices, inner.faces)), grid)
    r = np.linalg.norm(grid.voxel_centres(), axis=-1)
    assert np.all(shell[r < 4.5] == NAME_TO_INDEX["lv"])
    assert np.all(shell[(r > 5.5) & (r < 7.5)] == NAME_TO_INDEX["lv_myo"])


def test_flipped_and_permuted_affines_match_ras() -> None:
    heart = toy_heart()
    ras = Grid.centred((20, 22, 24), (60.0, 66.0, 72.0), centre_mm=(0.5, 1.0, 2.0))
    ref = voxelize(heart, ras)
    z, y, x = ras.shape
    # LPS: i runs towards -x, j towards -y; same voxel centres.
    lps_affine = ras.affine.copy()
    lps_affine[:3, :3] = ras.affine[:3, :3] @ np.diag([-1.0, -1.0, 1.0])
    lps_affine[:3, 3] = ras.index_to_world([x - 1, y - 1, 0])
    lps = voxelize(heart, Grid((z, y, x), lps_affine))
    assert np.array_equal(lps, ref[:, ::-1, ::-1])
    # i <-> j swapped (a 90 degree rotation plus flip of the index frame).
    perm = np.eye(4)
    perm[:3, :3] = ras.affine[:3, :3][:, [1, 0, 2]]
    perm[:3, 3] = ras.affine[:3, 3]
    swapped = voxelize(heart, Grid((z, x, y), perm))
    assert np.array_equal(swapped, ref.transpose(0, 2, 1))


def test_oblique_anisotropic_affine_matches_reference() -> None:
    heart = toy_heart()
    rot = trimesh.transformations.rotation_matrix(0.6, [0.2, 0.5, 1.0])[:3, :3]
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([2.6, 3.1, 3.7])
    affine[:3, 3] = [-30.0, -35.0, -38.0]
    grid = Grid((22, 24, 26), affine)
    occ = structure_occupancy(heart, grid)
    points = grid.voxel_centres().reshape(-1, 3)
    for channel in (0, 4):
        s = heart.structures[channel]
        ref = (np.abs(winding_numbers(points, s.vertices, s.faces)) > 0.5).reshape(grid.shape)
        assert ref.sum() > 100
        assert np.mean(occ[channel] == ref) >= 0.999


def test_mesh_partly_outside_grid() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=10.0).apply_translation([9.0, -8.0, 7.0])
    grid = Grid.centred(20, 20.0)
    occ = voxelize_structure(StructureMesh("lv", sphere.vertices, sphere.faces), grid)
    ref = np.abs(winding_numbers(grid.voxel_centres().reshape(-1, 3), sphere.vertices, sphere.faces)) > 0.5
    assert occ.any() and np.mean(occ.reshape(-1) == ref) >= 0.999


def test_empty_structure_and_bad_input() -> None:
    grid = Grid.centred(8, 8.0)
    assert not heart_mask(heart_of(), grid).any()
    with pytest.raises(ValueError, match="HeartMesh"):
        voxelize(ellipsoid("lv", (0, 0, 0), (1, 1, 1)), grid)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Grid"):
        voxelize(toy_heart(), (8, 8, 8))  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [12, pytest.param(28, marks=pytest.mark.slow)])
def test_template_heart_matches_reference_and_carves_cavity(size: int) -> None:
    from fedsim_tf.shape.template import template_heart

    heart = template_heart()
    verts = heart.stacked_vertices()
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    grid = Grid.centred(size, tuple((hi - lo)[::-1] + 6.0), centre_mm=tuple((lo + hi) / 2))
    occ = structure_occupancy(heart, grid)
    points = grid.voxel_centres().reshape(-1, 3)
    for channel, s in enumerate(heart.structures):
        ref = (np.abs(winding_numbers(points, s.vertices, s.faces, chunk=256)) > 0.5).reshape(grid.shape)
        assert ref.sum() > 10, s.name
        assert np.mean(occ[channel] == ref) >= 0.999, s.name
    labels = voxelize(heart, grid)
    lv, myo = NAME_TO_INDEX["lv"], NAME_TO_INDEX["lv_myo"]
    # The epicardial surface encloses the LV pool: no pool voxel is labelled myocardium.
    assert np.all(labels[occ[lv - 1]] != myo) and np.sum(labels == myo) > 0
    assert set(np.unique(labels)) == set(range(8))
