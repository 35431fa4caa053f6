"""Mesh checks shared by the template and phantom-heart tests."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from fedsim_tf.grid import Grid
from fedsim_tf.shape.mesh import HeartMesh, StructureMesh
from fedsim_tf.shape.voxelize import voxelize_structure


def trimesh_of(mesh: StructureMesh) -> trimesh.Trimesh:
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)


def volumes_ml(heart: HeartMesh) -> dict[str, float]:
    return {s.name: trimesh_of(s).volume / 1000.0 for s in heart.structures}


def assert_valid_surface(mesh: StructureMesh) -> None:
    """Closed, outward, no degenerate or folded faces, signed volume == occupancy volume."""
    tm = trimesh_of(mesh)
    assert tm.is_watertight and tm.is_winding_consistent, mesh.name
    assert tm.volume > 0, f"{mesh.name}: inward winding"
    assert tm.area_faces.min() > 1e-3, f"{mesh.name}: degenerate face"
    # Adjacent faces never fold back onto each other (a local self-intersection would).
    normals = tm.face_normals[tm.face_adjacency]
    assert np.einsum("ij,ij->i", normals[:, 0], normals[:, 1]).min() > 0.0, f"{mesh.name}: folded"
    # A self-intersecting surface has regions of winding number 2 or -1, so its signed volume
    # differs from the volume of the points it encloses (winding != 0), measured at 1 mm.
    lo, hi = mesh.vertices.min(0) - 2, mesh.vertices.max(0) + 2
    n = np.ceil(hi - lo).astype(int)
    grid = Grid.centred(tuple(n[::-1]), tuple(n[::-1].astype(float)), tuple((lo + hi) / 2))
    occupied_ml = voxelize_structure(mesh, grid).sum() / 1000.0
    assert occupied_ml == pytest.approx(tm.volume / 1000.0, rel=0.03), mesh.name
