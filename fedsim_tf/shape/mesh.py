"""Triangle-mesh containers for the seven-structure whole heart.

A :class:`HeartMesh` holds one closed triangle mesh per structure, in the order of
:data:`fedsim_tf.anatomy.STRUCTURES` (index 1..7). Vertex order per structure is fixed, so
vertices correspond across hearts built from the same template (what the statistical shape
model needs). Coordinates are world ``(x, y, z)`` in mm, RAS+ (see :mod:`fedsim_tf.grid`).
Faces are wound counter-clockwise seen from outside (outward normals).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsim_tf.anatomy import NUM_STRUCTURES, STRUCTURE_NAMES


@dataclass(frozen=True)
class StructureMesh:
    """One closed triangle mesh.

    Attributes:
        name: structure short name (see :mod:`fedsim_tf.anatomy`).
        vertices: ``(V, 3)`` float64 world x, y, z in mm.
        faces: ``(F, 3)`` int64 vertex indices, outward (counter-clockwise) winding.
    """

    name: str
    vertices: np.ndarray
    faces: np.ndarray

    def __post_init__(self) -> None:
        v = np.asarray(self.vertices, dtype=np.float64)
        f = np.asarray(self.faces, dtype=np.int64)
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"{self.name}: vertices must be (V, 3), got {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3 or (f.size and (f.min() < 0 or f.max() >= len(v))):
            raise ValueError(f"{self.name}: faces must be (F, 3) indices into the vertices")
        object.__setattr__(self, "vertices", v)
        object.__setattr__(self, "faces", f)

    def with_vertices(self, vertices: np.ndarray) -> "StructureMesh":
        """Same topology, new ``(V, 3)`` vertex positions in mm."""
        return StructureMesh(self.name, vertices, self.faces)


@dataclass(frozen=True)
class HeartMesh:
    """Seven structure meshes in anatomy order (index 1..7 -> ``structures[0..6]``)."""

    structures: tuple[StructureMesh, ...]

    def __post_init__(self) -> None:
        names = tuple(s.name for s in self.structures)
        if len(self.structures) != NUM_STRUCTURES or names != STRUCTURE_NAMES:
            raise ValueError(f"HeartMesh needs structures {STRUCTURE_NAMES}, got {names}")

    @property
    def vertex_counts(self) -> tuple[int, ...]:
        """Number of vertices of each structure, in anatomy order."""
        return tuple(len(s.vertices) for s in self.structures)

    def stacked_vertices(self) -> np.ndarray:
        """``(sum V, 3)`` all vertices, structures concatenated in anatomy order."""
        return np.concatenate([s.vertices for s in self.structures], axis=0)

    def with_stacked_vertices(self, vertices: np.ndarray) -> "HeartMesh":
        """Same topology with vertices taken from a ``(sum V, 3)`` array (inverse of
        :meth:`stacked_vertices`)."""
        vertices = np.asarray(vertices, dtype=np.float64)
        splits = np.cumsum(self.vertex_counts)[:-1]
        parts = np.split(vertices, splits, axis=0)
        return HeartMesh(tuple(s.with_vertices(p) for s, p in zip(self.structures, parts)))

    def centre(self) -> np.ndarray:
        """``(3,)`` mean of all vertices in mm (the pose's centre of rotation and scaling)."""
        return self.stacked_vertices().mean(axis=0)
