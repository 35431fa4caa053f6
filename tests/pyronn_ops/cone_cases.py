"""Small cone-beam geometries shared by the operator tests (fast on 2 CPU cores)."""

from __future__ import annotations

import numpy as np

from pyronn_ops import GeometryCone3D, circular_trajectory_3d


def small_geometry(
    volume_shape: tuple[int, int, int] = (10, 12, 14),
    volume_spacing: tuple[float, float, float] = (1.0, 1.2, 0.9),
    detector_shape: tuple[int, int] = (12, 16),
    detector_spacing: tuple[float, float] = (2.0, 1.5),
    views: int = 5,
    angular_range: float | tuple[float, float] = (0.3, 2.5),
    convention: str = "pyronn-0.1",
) -> GeometryCone3D:
    """Anisotropic voxels, a non-square detector and a short scan (range < 2 pi) by default."""
    geometry = GeometryCone3D(
        volume_shape, volume_spacing, detector_shape, detector_spacing, views, angular_range, 600.0, 400.0
    )
    geometry.set_trajectory(circular_trajectory_3d(geometry, convention, dtype=np.float64))
    return geometry


def relative_max_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """``max |actual - expected| / max |expected|``."""
    return float(np.max(np.abs(np.asarray(actual, np.float64) - expected)) / np.max(np.abs(expected)))
