"""Circular cone-beam trajectories as ``(N, 3, 4)`` projection matrices.

A matrix ``P = K [R | -R S]`` maps homogeneous world ``(x, y, z, 1)`` in mm to ``(u*w, v*w, w)``
with ``u`` (column) and ``v`` (row) pixel indices, pixel centres at integers, and ``w`` the depth in
mm along the central ray. ``K = [[SDD/du, 0, u0], [0, SDD/dv, v0], [0, 0, 1]]``; the rows of ``R``
are the detector axes ``e_u``, ``e_v`` and the viewing direction ``e_w = -S / SID``, so
``||P[2, :3]|| = 1`` (required for correct back-projection intensities).
"""

from __future__ import annotations

import numpy as np

from pyronn_ops.geometry import GeometryCone3D

CONVENTIONS = ("pyronn-0.1", "pyronn-1.x")


def circular_trajectory_3d(
    geometry: GeometryCone3D,
    convention: str = "pyronn-0.1",
    dtype: type = np.float32,
) -> np.ndarray:
    """Projection matrices of a circular source orbit about the z axis.

    Conventions (``beta`` = ``geometry.angles``, radians):

    * ``"pyronn-0.1"`` (PYRO-NN 0.1.0): source ``SID * (cos b, sin b, 0)`` (counter-clockwise seen
      from +z), ``e_u = (-sin b, cos b, 0)``, ``e_v = (0, 0, -1)``, principal point ``(W/2, H/2)``.
    * ``"pyronn-1.x"`` (PYRO-NN >= 1.0, ``swap_detector_axis=True``): source
      ``SID * (cos b, -sin b, 0)`` (clockwise), ``e_u = (sin b, cos b, 0)``, ``e_v = (0, 0, -1)``,
      principal point ``((W-1)/2, (H-1)/2)``.

    Args:
        geometry: the scanner; uses ``angles``, SDD, SID, ``detector_shape`` ``(H, W)`` and
            ``detector_spacing`` ``(dv, du)`` in mm.
        convention: one of ``CONVENTIONS``.
        dtype: output dtype (computed in float64 and cast), ``np.float32`` as PYRO-NN stores them.

    Returns:
        ``(N, 3, 4)`` matrices, world mm -> homogeneous pixel indices.

    Raises:
        ValueError: unknown ``convention``.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    beta = geometry.angles
    cos_b, sin_b = np.cos(beta), np.sin(beta)
    zeros, ones = np.zeros_like(beta), np.ones_like(beta)
    height, width = geometry.detector_shape
    dv, du = geometry.detector_spacing
    sid, sdd = geometry.source_isocenter_distance, geometry.source_detector_distance
    if convention == "pyronn-0.1":
        source = sid * np.stack([cos_b, sin_b, zeros], axis=1)
        e_u = np.stack([-sin_b, cos_b, zeros], axis=1)
        principal = (width / 2, height / 2)
    else:
        source = sid * np.stack([cos_b, -sin_b, zeros], axis=1)
        e_u = np.stack([sin_b, cos_b, zeros], axis=1)
        principal = ((width - 1) / 2, (height - 1) / 2)
    e_v = np.stack([zeros, zeros, -ones], axis=1)
    e_w = -source / sid
    rotation = np.stack([e_u, e_v, e_w], axis=1)  # (N, 3, 3), rows are the detector frame axes
    extrinsic = np.concatenate([rotation, -(rotation @ source[:, :, None])], axis=2)
    intrinsic = np.array([[sdd / du, 0.0, principal[0]], [0.0, sdd / dv, principal[1]], [0.0, 0.0, 1.0]])
    return (intrinsic @ extrinsic).astype(dtype)
