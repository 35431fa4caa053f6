"""Pre-weights for FDK: cosine weights and Parker short-scan redundancy weights.

Scan angles and fan angles are read from the geometry's projection matrices, so the weights follow
whichever trajectory convention (``"pyronn-0.1"`` counter-clockwise, ``"pyronn-1.x"`` clockwise)
built them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def cosine_weights_3d(geometry: Any) -> np.ndarray:
    """FDK cosine weights ``SDD / sqrt(SDD^2 + u^2 + v^2)``, u and v in mm from the detector centre.

    Args:
        geometry: a ``GeometryCone3D`` (uses ``detector_shape`` ``(H, W)``, ``detector_spacing``
            ``(dv, du)`` in mm and ``source_detector_distance`` in mm).

    Returns:
        ``(H, W)`` float32, 1 at the detector centre; pixel ``(j, i)`` sits at
        ``u = (i - (W - 1)/2) du``, ``v = (j - (H - 1)/2) dv``.
    """
    height, width = (int(n) for n in geometry.detector_shape)
    dv, du = (float(s) for s in geometry.detector_spacing)
    sdd = float(geometry.source_detector_distance)
    u = (np.arange(width) - (width - 1) / 2) * du
    v = (np.arange(height) - (height - 1) / 2) * dv
    weights = sdd / np.sqrt(sdd**2 + u[None, :] ** 2 + v[:, None] ** 2)
    return weights.astype(np.float32)


def scan_angles(geometry: Any) -> tuple[np.ndarray, float]:
    """Source angles along the orbit, measured from the first view in the direction of rotation.

    Args:
        geometry: a ``GeometryCone3D`` with a trajectory of ``N >= 2`` views about the z axis.

    Returns:
        ``(beta, step)``: ``beta`` ``(N,)`` float64 radians (``beta[0] = 0``, increasing) and the
        mean angular step in radians, so the scan covers ``N * step``.
    """
    matrices = geometry.require_trajectory()
    if matrices.shape[0] < 2:
        raise ValueError(f"geometry: scan angles need at least 2 views, got {matrices.shape[0]}")
    phi = _orbit_angles(_sources(matrices))
    beta = (phi - phi[0]) * _rotation_sign(phi)
    if np.any(np.diff(beta) <= 0):
        raise ValueError("geometry: the source angle must change monotonically along the trajectory")
    return beta, float(beta[-1] / (beta.size - 1))


def fan_angles(geometry: Any) -> np.ndarray:
    """In-plane fan angle of every detector column's ray, signed for Parker weighting.

    The sign is chosen so that the ray ``(beta, gamma)`` is measured again at
    ``(beta + pi + 2 gamma, -gamma)`` (``beta`` as in :func:`scan_angles`).

    Args:
        geometry: a ``GeometryCone3D`` with a trajectory about the z axis.

    Returns:
        ``(N, W)`` float64 radians, evaluated on the central detector row ``(H - 1)/2``.
    """
    matrices = geometry.require_trajectory()
    height, width = (int(n) for n in geometry.detector_shape)
    sources = _sources(matrices)
    pixels = np.stack(
        [np.arange(width, dtype=np.float64), np.full(width, (height - 1) / 2), np.ones(width)], axis=0
    )
    directions = np.linalg.solve(matrices[:, :, :3], np.broadcast_to(pixels, (matrices.shape[0], 3, width)))
    to_centre = -sources[:, :2, None]
    cross = to_centre[:, 0] * directions[:, 1] - to_centre[:, 1] * directions[:, 0]
    dot = to_centre[:, 0] * directions[:, 0] + to_centre[:, 1] * directions[:, 1]
    return _rotation_sign(_orbit_angles(sources)) * np.arctan2(cross, dot)


def parker_weight(beta: np.ndarray, gamma: np.ndarray, delta: float) -> np.ndarray:
    """Parker's short-scan weight of the ray ``(beta, gamma)`` for a scan over ``[0, pi + 2 delta]``.

    ``sin^2(pi/4 * beta/(delta - gamma))`` for ``0 <= beta < 2(delta - gamma)``; 1 up to
    ``pi - 2 gamma``; ``sin^2(pi/4 * (pi + 2 delta - beta)/(delta + gamma))`` up to
    ``pi + 2 delta``; 0 elsewhere. Conjugate rays ``(beta, gamma)`` and
    ``(beta + pi + 2 gamma, -gamma)`` get weights summing to 1 when ``|gamma| <= delta``.

    Args:
        beta: source angle in radians (any shape).
        gamma: signed fan angle in radians, broadcastable with ``beta``.
        delta: half fan angle of the scan in radians, ``> 0``.

    Returns:
        float64 weights in ``[0, 1]``, shape of ``beta`` and ``gamma`` broadcast.
    """
    beta, gamma = np.broadcast_arrays(np.asarray(beta, dtype=np.float64), np.asarray(gamma, dtype=np.float64))
    rise, fall = delta - gamma, delta + gamma
    weights = np.zeros(beta.shape, dtype=np.float64)
    flat = (beta >= 2 * rise) & (beta <= np.pi - 2 * gamma)
    weights[flat] = 1.0
    rising = (beta >= 0) & (beta < 2 * rise)
    weights[rising] = np.sin(np.pi / 4 * beta[rising] / rise[rising]) ** 2
    falling = (beta > np.pi - 2 * gamma) & (beta <= np.pi + 2 * delta)
    weights[falling] = np.sin(np.pi / 4 * (np.pi + 2 * delta - beta[falling]) / fall[falling]) ** 2
    return weights


def parker_weights_3d(geometry: Any, delta: float | None = None) -> np.ndarray:
    """Parker short-scan weights for every view and detector column.

    Args:
        geometry: a ``GeometryCone3D`` with a circular trajectory whose scan covers at least
            ``pi + 2 delta`` (``N * step`` from :func:`scan_angles`).
        delta: half fan angle in radians; default the largest ``|gamma|`` of the detector columns
            (the standard minimal short scan). Views past ``pi + 2 delta`` get weight 0.

    Returns:
        ``(N, 1, W)`` float32 weights (broadcast over the rows ``v``).

    Raises:
        ValueError: ``delta`` smaller than the fan or a scan shorter than ``pi + 2 delta``.
    """
    beta, step = scan_angles(geometry)
    gamma = fan_angles(geometry)
    widest = float(np.max(np.abs(gamma)))
    delta = widest if delta is None else float(delta)
    if not math.isfinite(delta) or delta < widest - 1e-12:
        raise ValueError(f"delta ({delta} rad) must cover the fan half angle {widest} rad")
    covered = beta.size * step
    if covered < np.pi + 2 * delta - 1e-9:
        raise ValueError(
            f"angular_range: a short scan needs pi + 2*delta = {np.pi + 2 * delta:.6f} rad, the trajectory "
            f"covers {covered:.6f} rad"
        )
    return parker_weight(beta[:, None], gamma, delta)[:, None, :].astype(np.float32)


def _sources(matrices: np.ndarray) -> np.ndarray:
    """``(N, 3)`` source positions ``C = -M^-1 p4`` in mm from ``(N, 3, 4)`` projection matrices."""
    return -np.linalg.solve(matrices[:, :, :3], matrices[:, :, 3:])[:, :, 0]


def _orbit_angles(sources: np.ndarray) -> np.ndarray:
    """``(N,)`` unwrapped polar angles in radians of ``(N, 3)`` source positions about the z axis."""
    return np.unwrap(np.arctan2(sources[:, 1], sources[:, 0]))


def _rotation_sign(phi: np.ndarray) -> float:
    """+1 for a counter-clockwise orbit (seen from +z), -1 for clockwise; +1 for a single view."""
    return float(np.sign(phi[1] - phi[0])) if phi.size > 1 else 1.0
