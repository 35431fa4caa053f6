"""Voxel grids: array shape plus a NIfTI-style affine, the one place that relates voxels to mm.

Conventions used everywhere in fedsim_tf (and matching ``pyronn_ops``):

* World coordinates are ``(x, y, z)`` in mm in the **RAS+ patient frame**: +x towards the
  patient's *Right*, +y towards *Anterior*, +z towards *Superior* (nibabel's "RAS+"; the
  heart's apex therefore points to -x, +y, -z: left, anterior, inferior).
* In-memory volumes are NumPy/TF arrays indexed ``[z, y, x]`` (x fastest), like PYRO-NN.
* ``affine`` is the 4x4 NIfTI affine mapping the voxel index ``(i, j, k, 1)`` with
  ``i`` = x index, ``j`` = y index, ``k`` = z index to world ``(x, y, z, 1)`` in mm; voxel
  centres sit at integer indices. An array ``vol[z, y, x]`` is therefore written to NIfTI as
  ``vol.transpose(2, 1, 0)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """A voxel grid.

    Attributes:
        shape: ``(Z, Y, X)`` number of voxels.
        affine: ``(4, 4)`` float64, voxel index ``(i=x, j=y, k=z, 1)`` -> world ``(x, y, z, 1)`` mm.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) <= 0:
            raise ValueError(f"Grid shape must be 3 positive ints (Z, Y, X), got {self.shape}")
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise ValueError(f"Grid affine must be a finite 4x4 matrix, got shape {affine.shape}")
        if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise ValueError("Grid affine is singular")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "affine", affine)

    @classmethod
    def centred(
        cls,
        shape: tuple[int, int, int] | int,
        fov_mm: tuple[float, float, float] | float,
        centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> "Grid":
        """Axis-aligned RAS grid whose field of view ``fov_mm`` (z, y, x extents, edge to edge)
        is centred on ``centre_mm`` (world x, y, z)."""
        shape_zyx = (shape,) * 3 if np.isscalar(shape) else tuple(shape)
        fov_zyx = (float(fov_mm),) * 3 if np.isscalar(fov_mm) else tuple(float(f) for f in fov_mm)
        spacing_xyz = np.array(fov_zyx[::-1]) / np.array(shape_zyx[::-1], dtype=np.float64)
        n_xyz = np.array(shape_zyx[::-1], dtype=np.float64)
        origin_xyz = np.asarray(centre_mm, dtype=np.float64) - (n_xyz - 1) / 2 * spacing_xyz
        affine = np.eye(4)
        affine[:3, :3] = np.diag(spacing_xyz)
        affine[:3, 3] = origin_xyz
        return cls(tuple(int(s) for s in shape_zyx), affine)

    @property
    def spacing_zyx(self) -> np.ndarray:
        """``(3,)`` voxel size in mm along z, y, x (column norms of the affine)."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)[::-1].copy()

    def index_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """``(..., 3)`` voxel indices ``(i=x, j=y, k=z)`` -> ``(..., 3)`` world mm."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """``(..., 3)`` world mm -> ``(..., 3)`` fractional voxel indices ``(i=x, j=y, k=z)``."""
        xyz = np.asarray(xyz, dtype=np.float64)
        inv = np.linalg.inv(self.affine)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    def voxel_centres(self) -> np.ndarray:
        """``(Z, Y, X, 3)`` world coordinates (x, y, z) in mm of every voxel centre."""
        k, j, i = np.meshgrid(*(np.arange(n) for n in self.shape), indexing="ij")
        return self.index_to_world(np.stack([i, j, k], axis=-1))
