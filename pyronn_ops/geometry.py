"""Cone-beam scanner description with PYRO-NN 0.1.0 attribute names.

Axis orders: volume quantities are ``(z, y, x)``, detector quantities ``(v, u)`` = ``[H, W]``,
sinograms ``[N, H, W]``. Lengths are in mm, angles in radians, ``step_size`` in voxel-index units.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def _positive_vector(name: str, value: Any, length: int, integer: bool) -> np.ndarray:
    """Validate ``value`` as ``length`` positive finite numbers (ints when ``integer``)."""
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.size != length:
        raise ValueError(f"{name} must have {length} entries, got {np.shape(value)}")
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"{name} must be positive and finite, got {list(np.asarray(value).reshape(-1))}")
    if integer and np.any(array != np.round(array)):
        raise ValueError(f"{name} must hold integers, got {list(np.asarray(value).reshape(-1))}")
    return array


def _positive_scalar(name: str, value: Any) -> float:
    """Validate ``value`` as one positive finite number."""
    number = float(np.asarray(value, dtype=np.float64))
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return number


class GeometryCone3D:
    """A 3D cone-beam CT geometry (PYRO-NN ``GeometryCone3D``).

    Args:
        volume_shape: ``(Z, Y, X)`` number of voxels.
        volume_spacing: ``(sz, sy, sx)`` voxel size in mm.
        detector_shape: ``(H, W)`` = (rows along v, columns along u) in pixels.
        detector_spacing: ``(dv, du)`` pixel size in mm.
        number_of_projections: ``N`` views, > 0.
        angular_range: radians; a scalar ``range`` (start 0) or ``[start, end]``. View ``p`` is at
            ``start + p * (end - start) / N`` (end excluded).
        source_detector_distance: SDD in mm.
        source_isocenter_distance: SID in mm, ``0 < SID < SDD``.
        volume_origin: optional ``(z, y, x)`` world position in mm of voxel ``(0, 0, 0)``'s centre;
            default ``-(shape - 1) / 2 * spacing`` (isocentre at the volume centre).

    Derived attributes (NumPy float64 unless stated): ``volume_origin`` (zyx, mm),
    ``detector_origin`` ((v, u), mm), ``sinogram_shape`` ``(N, H, W)``, ``fan_angle`` and
    ``cone_angle`` (half angles, radians), ``projection_multiplier = SID * SDD * du * pi / N``,
    ``step_size = 1.0`` (voxel-index units), ``angles`` ``(N,)`` radians.
    ``projection_matrices`` (float32 ``(N, 3, 4)``) and ``projection_matrices_float64`` are set by
    :meth:`set_trajectory`, e.g. ``geometry.set_trajectory(circular_trajectory_3d(geometry))``.

    Raises:
        ValueError: a non-positive or non-finite size, spacing, distance or count, ``SID >= SDD``,
            or an empty angular range; the message names the parameter.
    """

    def __init__(
        self,
        volume_shape: Sequence[int],
        volume_spacing: Sequence[float],
        detector_shape: Sequence[int],
        detector_spacing: Sequence[float],
        number_of_projections: int,
        angular_range: float | Sequence[float],
        source_detector_distance: float,
        source_isocenter_distance: float,
        volume_origin: Sequence[float] | None = None,
    ) -> None:
        self.volume_shape: tuple[int, int, int] = tuple(
            int(n) for n in _positive_vector("volume_shape", volume_shape, 3, integer=True)
        )
        self.volume_spacing = _positive_vector("volume_spacing", volume_spacing, 3, integer=False)
        self.detector_shape: tuple[int, int] = tuple(
            int(n) for n in _positive_vector("detector_shape", detector_shape, 2, integer=True)
        )
        self.detector_spacing = _positive_vector("detector_spacing", detector_spacing, 2, integer=False)
        self.number_of_projections = int(
            _positive_vector("number_of_projections", number_of_projections, 1, integer=True)[0]
        )
        self.source_detector_distance = _positive_scalar("source_detector_distance", source_detector_distance)
        self.source_isocenter_distance = _positive_scalar("source_isocenter_distance", source_isocenter_distance)
        if self.source_isocenter_distance >= self.source_detector_distance:
            raise ValueError(
                f"source_isocenter_distance ({self.source_isocenter_distance}) must be smaller than "
                f"source_detector_distance ({self.source_detector_distance})"
            )

        bounds = np.asarray(angular_range, dtype=np.float64).reshape(-1)
        if bounds.size == 1:
            bounds = np.array([0.0, bounds[0]])
        if bounds.size != 2 or not np.all(np.isfinite(bounds)) or bounds[1] == bounds[0]:
            raise ValueError(f"angular_range must be a finite non-zero range or [start, end], got {angular_range}")
        self.angular_start = float(bounds[0])
        self.angular_end = float(bounds[1])
        self.angular_range = self.angular_end - self.angular_start

        shape = np.asarray(self.volume_shape, dtype=np.float64)
        if volume_origin is None:
            self.volume_origin = -(shape - 1) / 2 * self.volume_spacing
        else:
            origin = np.asarray(volume_origin, dtype=np.float64).reshape(-1)
            if origin.size != 3 or not np.all(np.isfinite(origin)):
                raise ValueError(f"volume_origin must be 3 finite numbers (z, y, x), got {volume_origin}")
            self.volume_origin = origin
        self.detector_origin = -(np.asarray(self.detector_shape, dtype=np.float64) - 1) / 2 * self.detector_spacing
        self.sinogram_shape: tuple[int, int, int] = (self.number_of_projections, *self.detector_shape)
        height, width = self.detector_shape
        dv, du = self.detector_spacing
        sdd = self.source_detector_distance
        self.fan_angle = math.atan((width - 1) / 2 * du / sdd)
        self.cone_angle = math.atan((height - 1) / 2 * dv / sdd)
        self.projection_multiplier = (
            self.source_isocenter_distance * sdd * du * math.pi / self.number_of_projections
        )
        self.step_size = 1.0
        self.projection_matrices: np.ndarray | None = None
        self.projection_matrices_float64: np.ndarray | None = None

    @property
    def angles(self) -> np.ndarray:
        """``(N,)`` float64 view angles in radians, ``start + p * range / N``."""
        steps = np.arange(self.number_of_projections, dtype=np.float64)
        return self.angular_start + steps * self.angular_range / self.number_of_projections

    def set_trajectory(self, projection_matrices: np.ndarray) -> None:
        """Store the ``(N, 3, 4)`` projection matrices (world mm -> (u*w, v*w, w), pixel indices).

        Any matrices are accepted as long as the shape matches ``number_of_projections`` and every
        ``P[:, :3]`` is finite and invertible. A float32 copy goes to ``projection_matrices``, the
        given values (as float64) to ``projection_matrices_float64``.

        Raises:
            ValueError: wrong shape, non-finite entries or a singular ``P[:, :3]``.
        """
        matrices = np.asarray(projection_matrices, dtype=np.float64)
        expected = (self.number_of_projections, 3, 4)
        if matrices.shape != expected:
            raise ValueError(f"projection_matrices must have shape {expected}, got {matrices.shape}")
        if not np.all(np.isfinite(matrices)):
            raise ValueError("projection_matrices must be finite")
        determinants = np.linalg.det(matrices[:, :, :3])
        scale = np.prod(np.linalg.norm(matrices[:, :, :3], axis=2), axis=1)
        if np.any(np.abs(determinants) <= 1e-12 * scale):
            raise ValueError("projection_matrices: P[:, :3] must be invertible for every view")
        self.projection_matrices_float64 = matrices.copy()
        self.projection_matrices = matrices.astype(np.float32)

    def require_trajectory(self) -> np.ndarray:
        """Return ``projection_matrices_float64`` ``(N, 3, 4)`` or raise if no trajectory is set."""
        if self.projection_matrices_float64 is None:
            raise ValueError(
                "geometry has no projection_matrices: call geometry.set_trajectory(circular_trajectory_3d(geometry))"
            )
        return self.projection_matrices_float64

    def to_config(self) -> dict[str, Any]:
        """JSON-friendly dict of the constructor arguments plus the trajectory (if set)."""
        return {
            "volume_shape": list(self.volume_shape),
            "volume_spacing": self.volume_spacing.tolist(),
            "detector_shape": list(self.detector_shape),
            "detector_spacing": self.detector_spacing.tolist(),
            "number_of_projections": self.number_of_projections,
            "angular_range": [self.angular_start, self.angular_end],
            "source_detector_distance": self.source_detector_distance,
            "source_isocenter_distance": self.source_isocenter_distance,
            "volume_origin": self.volume_origin.tolist(),
            "projection_matrices": (
                None if self.projection_matrices_float64 is None else self.projection_matrices_float64.tolist()
            ),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "GeometryCone3D":
        """Inverse of :meth:`to_config`."""
        arguments = dict(config)
        matrices = arguments.pop("projection_matrices", None)
        geometry = cls(**arguments)
        if matrices is not None:
            geometry.set_trajectory(np.asarray(matrices, dtype=np.float64))
        return geometry

    def __repr__(self) -> str:
        return (
            f"GeometryCone3D(volume_shape={self.volume_shape}, volume_spacing={self.volume_spacing.tolist()}, "
            f"detector_shape={self.detector_shape}, detector_spacing={self.detector_spacing.tolist()}, "
            f"number_of_projections={self.number_of_projections}, "
            f"angular_range=[{self.angular_start}, {self.angular_end}], "
            f"source_detector_distance={self.source_detector_distance}, "
            f"source_isocenter_distance={self.source_isocenter_distance})"
        )
