"""Exact cone-beam line integrals of ellipsoid phantoms, for validating geometries and projectors.

For every detector pixel the ray runs from the source ``C = -M^-1 p4`` along ``M^-1 (u, v, 1)``
(``P = [M | p4]`` a projection matrix, ``u``/``v`` column/row pixel indices). The chord of the
whole line through an ellipsoid ``|A (x - c)| <= 1`` is ``2 sqrt(disc) / |A d|^2 * |d|`` with
``disc = (e.g)^2 - |g|^2 (|e|^2 - 1)``, ``e = A (C - c)``, ``g = A d``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from pyronn_ops.phantoms import Ellipsoid


def analytic_ellipsoid_projection(ellipsoids: Sequence[Ellipsoid], geometry: Any) -> np.ndarray:
    """Sum over ellipsoids of ``density * chord length`` for every ray of every view.

    Args:
        ellipsoids: shapes in world mm (e.g. from :func:`pyronn_ops.phantoms.shepp_logan_ellipsoids`).
        geometry: a ``GeometryCone3D`` with a trajectory (its float64 projection matrices are used).

    Returns:
        float64 ``[N, H, W]`` line integrals in density * mm, pixel ``[p, j, i]`` at ``(u, v) = (i, j)``.
    """
    matrices = geometry.require_trajectory()
    height, width = (int(n) for n in geometry.detector_shape)
    rows, columns = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    pixels = np.stack([columns.ravel(), rows.ravel(), np.ones(height * width)], axis=0)  # (3, H*W)
    shapes = [(item.shape_matrix, item.center, item.density) for item in ellipsoids]
    sinogram = np.zeros((matrices.shape[0], height * width), dtype=np.float64)
    for view, matrix in enumerate(matrices):
        inverse = np.linalg.inv(matrix[:, :3])
        source = -inverse @ matrix[:, 3]
        directions = inverse @ pixels  # (3, H*W), un-normalised
        lengths = np.linalg.norm(directions, axis=0)
        for shape_matrix, center, density in shapes:
            offset = shape_matrix @ (source - center)  # (3,)
            slope = shape_matrix @ directions  # (3, H*W)
            slope2 = np.sum(slope**2, axis=0)
            half = offset @ slope
            disc = half**2 - slope2 * (offset @ offset - 1.0)
            chord = 2.0 * np.sqrt(np.maximum(disc, 0.0)) / slope2 * lengths
            sinogram[view] += density * chord
    return sinogram.reshape(matrices.shape[0], height, width)
