"""Voxel phantoms (3D Shepp-Logan and primitives) and their ellipsoid descriptions in world mm.

Volumes are float32 arrays ``[Z, Y, X]`` (x fastest). A voxel's value is the summed density of the
shapes that contain its centre (no partial-volume averaging).

Coordinates:

* :class:`Ellipsoid` and :func:`voxelize_ellipsoids` work in world mm ``(x, y, z)`` with the
  ``GeometryCone3D`` voxel convention: voxel ``(k, j, i)`` is centred at
  ``origin + (i sx, j sy, k sz)``, default origin ``-(shape - 1)/2 * spacing`` (isocentre at the
  volume centre).
* The primitives :func:`sphere`, :func:`ellipsoid` and :func:`cube` take positions and sizes in
  voxel-index units, every triple in ``(z, y, x)`` order (PYRO-NN 0.1.0's ``sphere`` read ``pos``
  as ``(x, y, z)``; here the order is ``(z, y, x)`` throughout).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

# Modified 3D Shepp-Logan (Toft contrast): centre (x0, y0, z0), semi-axes (a, b, c) in normalised
# coordinates, rotation phi about z (radians), density.
_SHEPP_LOGAN_TABLE = np.array(
    [
        [0.0, 0.0, 0.0, 0.69, 0.92, 0.81, 0.0, 1.0],
        [0.0, -0.0184, 0.0, 0.6624, 0.874, 0.78, 0.0, -0.8],
        [0.22, 0.0, 0.0, 0.11, 0.31, 0.22, -np.pi / 10, -0.2],
        [-0.22, 0.0, 0.0, 0.16, 0.41, 0.28, np.pi / 10, -0.2],
        [0.0, 0.35, -0.15, 0.21, 0.25, 0.41, 0.0, 0.1],
        [0.0, 0.1, 0.25, 0.046, 0.046, 0.05, 0.0, 0.1],
        [0.0, -0.1, 0.25, 0.046, 0.046, 0.05, 0.0, 0.1],
        [-0.08, -0.605, 0.0, 0.046, 0.023, 0.05, 0.0, 0.1],
        [0.0, -0.605, 0.0, 0.023, 0.023, 0.02, 0.0, 0.1],
        [0.06, -0.605, 0.0, 0.023, 0.046, 0.02, 0.0, 0.1],
    ]
)


def _rotation_z(angle: float) -> np.ndarray:
    """``(3, 3)`` rotation by ``angle`` radians about z (counter-clockwise seen from +z)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rotation_y(angle: float) -> np.ndarray:
    """``(3, 3)`` rotation by ``angle`` radians about y."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


@dataclass(frozen=True, eq=False)
class Ellipsoid:
    """A solid ellipsoid of constant density in world mm.

    A point ``x`` (xyz, mm) is inside iff ``|diag(1/semi_axes) rotation^T (x - center)| <= 1``
    (voxelisation allows a relative 1e-9 so that lattice points on the surface count as inside).

    Attributes:
        center: ``(3,)`` float64 centre ``(x, y, z)`` in mm.
        semi_axes: ``(3,)`` float64 semi-axis lengths in mm, along the columns of ``rotation``.
        rotation: ``(3, 3)`` float64 orthonormal matrix whose columns are the ellipsoid's axes in
            world ``(x, y, z)``.
        density: value added inside (e.g. 1/mm for attenuation; line integrals are density * mm).
    """

    center: np.ndarray
    semi_axes: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    density: float = 1.0

    def __post_init__(self) -> None:
        center = np.asarray(self.center, dtype=np.float64).reshape(-1)
        semi_axes = np.asarray(self.semi_axes, dtype=np.float64).reshape(-1)
        rotation = np.asarray(self.rotation, dtype=np.float64)
        if center.shape != (3,) or not np.all(np.isfinite(center)):
            raise ValueError(f"Ellipsoid center must be 3 finite numbers (x, y, z), got {self.center}")
        if semi_axes.shape != (3,) or not np.all(np.isfinite(semi_axes)) or np.any(semi_axes <= 0):
            raise ValueError(f"Ellipsoid semi_axes must be 3 positive numbers, got {self.semi_axes}")
        if rotation.shape != (3, 3) or not np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-9):
            raise ValueError("Ellipsoid rotation must be an orthonormal 3x3 matrix")
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "semi_axes", semi_axes)
        object.__setattr__(self, "rotation", rotation)
        object.__setattr__(self, "density", float(self.density))

    @property
    def shape_matrix(self) -> np.ndarray:
        """``(3, 3)`` ``A = diag(1/semi_axes) rotation^T``: inside iff ``|A (x - center)| <= 1``."""
        return self.rotation.T / self.semi_axes[:, None]

    @property
    def half_extent(self) -> np.ndarray:
        """``(3,)`` half widths in mm of the axis-aligned bounding box, ``(x, y, z)``."""
        return np.sqrt(np.sum((self.rotation * self.semi_axes[None, :]) ** 2, axis=1))


def _ellipsoid_from_matrix(center: np.ndarray, shape_matrix: np.ndarray, density: float) -> Ellipsoid:
    """The ellipsoid ``|A (x - center)| <= 1`` for any invertible ``(3, 3)`` ``A``."""
    _, singular, vt = np.linalg.svd(shape_matrix)
    rotation = vt.T
    if np.linalg.det(rotation) < 0:
        rotation[:, 2] *= -1
    return Ellipsoid(center=center, semi_axes=1.0 / singular, rotation=rotation, density=density)


def _check_shape(name: str, shape: Sequence[int]) -> tuple[int, int, int]:
    """Validate a ``(Z, Y, X)`` volume shape."""
    array = np.asarray(shape, dtype=np.float64).reshape(-1)
    if array.size != 3 or np.any(array < 1) or np.any(array != np.round(array)):
        raise ValueError(f"{name} must be 3 positive integers (Z, Y, X), got {shape}")
    return tuple(int(n) for n in array)


def _check_triple(name: str, value: float | Sequence[float], positive: bool) -> np.ndarray:
    """A scalar (repeated) or 3 numbers as a ``(3,)`` float64 array, order kept."""
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.size == 1:
        array = np.repeat(array, 3)
    if array.shape != (3,) or not np.all(np.isfinite(array)) or (positive and np.any(array <= 0)):
        kind = "positive" if positive else "finite"
        raise ValueError(f"{name} must be a {kind} number or 3 {kind} numbers, got {value}")
    return array


def shepp_logan_ellipsoids(
    volume_shape: Sequence[int], volume_spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> list[Ellipsoid]:
    """The 10 ellipsoids of :func:`shepp_logan_3d` in world mm for a centred volume.

    Normalised coordinate ``x_n = (i - (X - 1)/2) / ((X - 1)/2)`` maps to ``x = x_n (X - 1)/2 sx``
    mm (likewise y, z), so the phantom fills the volume edge-centre to edge-centre. With
    anisotropic scaling the rotated ellipsoids are re-expressed exactly (semi-axes and rotation from
    an SVD), so :func:`pyronn_ops.analytic.analytic_ellipsoid_projection` of these ellipsoids is the
    exact projection of the voxelised phantom's continuous model.

    Args:
        volume_shape: ``(Z, Y, X)``, each ``>= 2``.
        volume_spacing: ``(sz, sy, sx)`` in mm (e.g. ``geometry.volume_spacing``).

    Returns:
        10 :class:`Ellipsoid` with densities 1, -0.8, -0.2, -0.2 and 0.1 (x6).
    """
    shape = _check_shape("volume_shape", volume_shape)
    if min(shape) < 2:
        raise ValueError(f"volume_shape must be at least 2 voxels per axis, got {volume_shape}")
    spacing = _check_triple("volume_spacing", volume_spacing, positive=True)
    scale = (np.array(shape[::-1], dtype=np.float64) - 1) / 2 * spacing[::-1]  # mm per normalised unit, xyz
    ellipsoids = []
    for x0, y0, z0, a, b, c, phi, density in _SHEPP_LOGAN_TABLE:
        # Normalised body coordinates are Rz(phi) (x_n - c_n); x_n = x / scale.
        normalised = np.diag(1.0 / np.array([a, b, c])) @ _rotation_z(phi) @ np.diag(1.0 / scale)
        center = np.array([x0, y0, z0]) * scale
        ellipsoids.append(_ellipsoid_from_matrix(center, normalised, density))
    return ellipsoids


def voxelize_ellipsoids(
    ellipsoids: Sequence[Ellipsoid],
    volume_shape: Sequence[int],
    volume_spacing: Sequence[float] = (1.0, 1.0, 1.0),
    volume_origin: Sequence[float] | None = None,
) -> np.ndarray:
    """Sum of ``density * inside(voxel centre)`` over the ellipsoids.

    Args:
        ellipsoids: shapes in world mm.
        volume_shape: ``(Z, Y, X)``.
        volume_spacing: ``(sz, sy, sx)`` in mm.
        volume_origin: ``(z, y, x)`` mm of voxel ``(0, 0, 0)``'s centre; default centred.

    Returns:
        float32 ``[Z, Y, X]``.
    """
    shape = _check_shape("volume_shape", volume_shape)
    spacing_xyz = _check_triple("volume_spacing", volume_spacing, positive=True)[::-1]
    if volume_origin is None:
        origin_xyz = -(np.array(shape[::-1], dtype=np.float64) - 1) / 2 * spacing_xyz
    else:
        origin_xyz = _check_triple("volume_origin", volume_origin, positive=False)[::-1]
    volume = np.zeros(shape, dtype=np.float64)
    size_xyz = np.array(shape[::-1])
    for item in ellipsoids:
        low = np.ceil((item.center - item.half_extent - origin_xyz) / spacing_xyz).astype(int)
        high = np.floor((item.center + item.half_extent - origin_xyz) / spacing_xyz).astype(int) + 1
        low, high = np.maximum(low, 0), np.minimum(high, size_xyz)
        if np.any(high <= low):
            continue
        axes = [origin_xyz[d] + np.arange(low[d], high[d]) * spacing_xyz[d] - item.center[d] for d in range(3)]
        matrix = item.shape_matrix
        radius2 = np.zeros((high[2] - low[2], high[1] - low[1], high[0] - low[0]))
        for row in matrix:
            body = row[0] * axes[0][None, None, :] + row[1] * axes[1][None, :, None] + row[2] * axes[2][:, None, None]
            radius2 += body**2
        volume[low[2] : high[2], low[1] : high[1], low[0] : high[0]] += item.density * (radius2 <= 1.0 + 1e-9)
    return volume.astype(np.float32)


def shepp_logan_3d(shape: Sequence[int]) -> np.ndarray:
    """The modified 3D Shepp-Logan phantom (PYRO-NN ``shepp_logan_3d``).

    Ten ellipsoids in normalised coordinates ``x_n = (i - (X - 1)/2) / ((X - 1)/2)`` (likewise y, z),
    densities 1, -0.8, -0.2, -0.2, then 0.1 (x6), rotations about z only. The brain region is 0.2.

    Args:
        shape: ``(Z, Y, X)``, each ``>= 2``.

    Returns:
        float32 ``[Z, Y, X]``.
    """
    return voxelize_ellipsoids(shepp_logan_ellipsoids(shape), shape)


def _index_ellipsoid(
    pos: Sequence[float], semi_axes_zyx: np.ndarray, rotation_xyz: np.ndarray, value: float
) -> Ellipsoid:
    """An :class:`Ellipsoid` in voxel-index space (world = index, x = i, y = j, z = k)."""
    return Ellipsoid(
        center=_check_triple("pos", pos, positive=False)[::-1],
        semi_axes=semi_axes_zyx[::-1],
        rotation=rotation_xyz,
        density=value,
    )


def ellipsoid(
    shape: Sequence[int],
    pos: Sequence[float],
    axes: float | Sequence[float],
    euler: Sequence[float] = (0.0, 0.0, 0.0),
    value: float = 1.0,
) -> np.ndarray:
    """A solid ellipsoid in voxel-index units.

    Args:
        shape: ``(Z, Y, X)`` volume shape.
        pos: centre ``(z, y, x)`` in voxel indices.
        axes: semi-axes ``(c, b, a)`` in voxels along the body ``(z, y, x)`` axes (or one number).
        euler: ``(phi, theta, psi)`` radians; the body axes are rotated by ``Rz(phi) Ry(theta) Rz(psi)``
            (in ``(x, y, z)`` index space).
        value: density inside.

    Returns:
        float32 ``[Z, Y, X]``.
    """
    angles = np.asarray(euler, dtype=np.float64).reshape(-1)
    if angles.shape != (3,) or not np.all(np.isfinite(angles)):
        raise ValueError(f"euler must be 3 finite angles (phi, theta, psi) in radians, got {euler}")
    rotation = _rotation_z(angles[0]) @ _rotation_y(angles[1]) @ _rotation_z(angles[2])
    semi_axes = _check_triple("axes", axes, positive=True)
    return voxelize_ellipsoids([_index_ellipsoid(pos, semi_axes, rotation, value)], shape, volume_origin=(0, 0, 0))


def sphere(shape: Sequence[int], pos: Sequence[float], radius: float, value: float = 1.0) -> np.ndarray:
    """A solid ball: voxels whose centre lies within ``radius`` voxels of ``pos``.

    Args:
        shape: ``(Z, Y, X)`` volume shape.
        pos: centre ``(z, y, x)`` in voxel indices.
        radius: radius in voxels, ``> 0``.
        value: density inside.

    Returns:
        float32 ``[Z, Y, X]``.
    """
    if np.ndim(radius) != 0:
        raise ValueError(f"radius must be one positive number, got {radius}")
    return ellipsoid(shape, pos, radius, value=value)


def cube(shape: Sequence[int], pos: Sequence[float], size: float | Sequence[float], value: float = 1.0) -> np.ndarray:
    """An axis-aligned box covering the voxels whose centre lies in ``[pos - size/2, pos + size/2)``.

    An integer ``size`` therefore covers exactly ``size`` voxels per axis when it fits the volume.

    Args:
        shape: ``(Z, Y, X)`` volume shape.
        pos: centre ``(z, y, x)`` in voxel indices.
        size: edge lengths ``(z, y, x)`` in voxels (or one number).
        value: density inside.

    Returns:
        float32 ``[Z, Y, X]``.
    """
    dims = _check_shape("shape", shape)
    centre = _check_triple("pos", pos, positive=False)
    edges = _check_triple("size", size, positive=True)
    volume = np.zeros(dims, dtype=np.float32)
    low = np.clip(np.ceil(centre - edges / 2), 0, dims).astype(int)
    high = np.clip(np.ceil(centre + edges / 2), 0, dims).astype(int)
    volume[low[0] : high[0], low[1] : high[1], low[2] : high[2]] = value
    return volume
