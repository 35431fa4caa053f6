"""Slow float64 NumPy reference kernels: the executable specification of the cone-beam operators.

Everything here loops ray by ray (projector) or view by view over all voxels (back-projector) and
follows the PYRO-NN kernel steps literally; the TensorFlow ops in :mod:`pyronn_ops.projection` and
:mod:`pyronn_ops.backprojection` are tested against these functions. Axis orders: volumes
``(Z, Y, X)``, sinograms ``(N, H, W)``; positions inside a ray are voxel-index coordinates in
``(x, y, z)`` = ``(i, j, k)`` order, voxel centres at integers.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pyronn_ops.geometry import GeometryCone3D


class _Ray(NamedTuple):
    """One detector pixel's ray in voxel-index space.

    Attributes:
        start: ``(3,)`` source position, (x, y, z) voxel-index units.
        direction: ``(3,)`` unit direction in voxel-index space.
        mm_per_index: ``||direction * spacing||``, mm per unit of the ray parameter alpha.
        alpha_in: entry parameter of the clipped line.
        alpha_out: exit parameter (``alpha_out <= alpha_in`` means the ray misses the box).
    """

    start: np.ndarray
    direction: np.ndarray
    mm_per_index: float
    alpha_in: float
    alpha_out: float


def _matrices(geometry: GeometryCone3D, projection_matrices: np.ndarray | None) -> np.ndarray:
    """The ``(N, 3, 4)`` float64 matrices to use: the override or the geometry's trajectory."""
    if projection_matrices is None:
        return geometry.require_trajectory()
    matrices = np.asarray(projection_matrices, dtype=np.float64)
    if matrices.shape != (geometry.number_of_projections, 3, 4):
        raise ValueError(
            f"projection_matrices must have shape {(geometry.number_of_projections, 3, 4)}, got {matrices.shape}"
        )
    return matrices


def _trace_ray(
    matrix: np.ndarray, u: float, v: float, geometry: GeometryCone3D, hardware_interp: bool
) -> _Ray:
    """Steps 1-3: source and direction in voxel-index space, then clip the whole line to the box."""
    spacing = geometry.volume_spacing[::-1]  # (sx, sy, sz)
    origin = geometry.volume_origin[::-1]
    shape = np.asarray(geometry.volume_shape[::-1], dtype=np.float64)
    inverse = np.linalg.inv(matrix[:, :3])
    source_mm = -inverse @ matrix[:, 3]
    start = (source_mm - origin) / spacing
    direction = (inverse @ np.array([u, v, 1.0])) / spacing
    direction /= np.linalg.norm(direction)
    low, high = (np.full(3, -0.5), shape - 0.5) if hardware_interp else (np.zeros(3), shape)
    alpha_in, alpha_out = -np.inf, np.inf
    for axis in range(3):
        if direction[axis] == 0.0:
            if not low[axis] <= start[axis] <= high[axis]:
                alpha_in, alpha_out = 0.0, 0.0
            continue
        t_low = (low[axis] - start[axis]) / direction[axis]
        t_high = (high[axis] - start[axis]) / direction[axis]
        alpha_in = max(alpha_in, min(t_low, t_high))
        alpha_out = min(alpha_out, max(t_low, t_high))
    return _Ray(start, direction, float(np.linalg.norm(direction * spacing)), float(alpha_in), float(alpha_out))


def _sample_alphas(ray: _Ray, step: float) -> np.ndarray:
    """Step 4: ``alpha_k = alpha_in + step/2 + k*step`` while ``alpha_k < alpha_out``."""
    alphas = []
    k = 0
    while ray.alpha_in + step / 2 + k * step < ray.alpha_out:
        alphas.append(ray.alpha_in + step / 2 + k * step)
        k += 1
    return np.asarray(alphas, dtype=np.float64)


def _trilinear_weights(points: np.ndarray, shape_zyx: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Trilinear corners of ``points`` ``(M, 3)`` (x, y, z index units) in a volume ``shape_zyx``.

    Returns:
        flat indices ``(M, 8)`` into the C-ordered volume and weights ``(M, 8)``; corners outside
        the volume get weight 0 (zero outside) and index 0.
    """
    base = np.floor(points)
    frac = points - base
    base = base.astype(np.int64)
    size_xyz = np.asarray(shape_zyx[::-1])
    indices, weights = [], []
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                corner = base + np.array([dx, dy, dz])
                weight = (
                    (frac[:, 0] if dx else 1 - frac[:, 0])
                    * (frac[:, 1] if dy else 1 - frac[:, 1])
                    * (frac[:, 2] if dz else 1 - frac[:, 2])
                )
                inside = np.all((corner >= 0) & (corner < size_xyz), axis=1)
                flat = (corner[:, 2] * shape_zyx[1] + corner[:, 1]) * shape_zyx[2] + corner[:, 0]
                indices.append(np.where(inside, flat, 0))
                weights.append(np.where(inside, weight, 0.0))
    return np.stack(indices, axis=1), np.stack(weights, axis=1)


def _ray_quadrature(ray: _Ray, step: float, corrected: bool) -> tuple[np.ndarray, np.ndarray]:
    """Steps 4, 6, 7 and 8 as a linear form: sample points ``(K+1, 3)`` (the K samples, then the
    exit point) and coefficients ``(K+1,)`` such that the ray value is ``sum(coefficients * f)``."""
    alphas = _sample_alphas(ray, step)
    if alphas.size == 0:
        return np.zeros((0, 3)), np.zeros(0)
    coefficients = np.full(alphas.size + 1, step)
    coefficients[0] = step / 2
    coefficients[-1] = 0.0
    if corrected:
        last_length = ray.alpha_out - alphas[-1]
        coefficients[-2] += -step / 2 + last_length / 2
        coefficients[-1] = last_length / 2
    points = ray.start + np.append(alphas, ray.alpha_out)[:, None] * ray.direction
    return points, coefficients * ray.mm_per_index


def _resolve_step(geometry: GeometryCone3D, step_size: float | None) -> float:
    step = geometry.step_size if step_size is None else float(step_size)
    if not np.isfinite(step) or step <= 0:
        raise ValueError(f"step_size must be positive and finite, got {step_size}")
    return step


def reference_projection(
    volume: np.ndarray,
    geometry: GeometryCone3D,
    hardware_interp: bool = True,
    step_size: float | None = None,
    end_correction_rule: bool = True,
    projection_matrices: np.ndarray | None = None,
) -> np.ndarray:
    """Ray-driven trilinear cone-beam forward projection in float64 (kernel steps 1-8).

    Args:
        volume: ``(Z, Y, X)`` attenuation per mm.
        geometry: scanner with a trajectory set (or pass ``projection_matrices``).
        hardware_interp: clip box ``[-0.5, n-0.5]`` (True) or ``[0, n]`` (False) per axis, index units.
        step_size: sampling step in voxel-index units; None = ``geometry.step_size``.
        end_correction_rule: apply the end correction only when the ray sum is > 0 (PYRO-NN); when
            False it is applied to every ray with at least one sample (linear operator).
        projection_matrices: optional ``(N, 3, 4)`` override of the geometry's matrices.

    Returns:
        ``(N, H, W)`` line integrals in value * mm.
    """
    volume = np.asarray(volume, dtype=np.float64)
    if volume.shape != geometry.volume_shape:
        raise ValueError(f"volume must have shape {geometry.volume_shape}, got {volume.shape}")
    step = _resolve_step(geometry, step_size)
    matrices = _matrices(geometry, projection_matrices)
    n_views, height, width = geometry.sinogram_shape
    sinogram = np.zeros((n_views, height, width))
    for p in range(n_views):
        for v in range(height):
            for u in range(width):
                ray = _trace_ray(matrices[p], u, v, geometry, hardware_interp)
                alphas = _sample_alphas(ray, step)
                if alphas.size == 0:
                    continue
                points = ray.start + np.append(alphas, ray.alpha_out)[:, None] * ray.direction
                indices, weights = _trilinear_weights(points, geometry.volume_shape)
                f = np.sum(volume.reshape(-1)[indices] * weights, axis=1)
                total = step * (f[0] / 2 + np.sum(f[1:-1]))
                if total > 0 or not end_correction_rule:
                    last_length = ray.alpha_out - alphas[-1]
                    total += -step / 2 * f[-2] + last_length / 2 * (f[-2] + f[-1])
                sinogram[p, v, u] = total * ray.mm_per_index
    return sinogram


def reference_projection_adjoint(
    sinogram: np.ndarray,
    geometry: GeometryCone3D,
    hardware_interp: bool = True,
    step_size: float | None = None,
    end_correction_rule: bool = True,
    volume: np.ndarray | None = None,
    projection_matrices: np.ndarray | None = None,
) -> np.ndarray:
    """Exact transpose of :func:`reference_projection` in float64.

    With ``end_correction_rule`` the projector is piecewise linear; its transpose is taken for the
    linear operator selected at ``volume`` (end correction on the rays whose uncorrected sum at
    ``volume`` is > 0). Without the rule every ray with samples is corrected and ``volume`` is unused.

    Args:
        sinogram: ``(N, H, W)`` values per ray.
        volume: ``(Z, Y, X)`` linearisation point, required when ``end_correction_rule`` is True.
        Other arguments as in :func:`reference_projection`.

    Returns:
        ``(Z, Y, X)`` float64.
    """
    sinogram = np.asarray(sinogram, dtype=np.float64)
    if sinogram.shape != geometry.sinogram_shape:
        raise ValueError(f"sinogram must have shape {geometry.sinogram_shape}, got {sinogram.shape}")
    if end_correction_rule and volume is None:
        raise ValueError("volume is required to linearise the end-correction rule")
    step = _resolve_step(geometry, step_size)
    matrices = _matrices(geometry, projection_matrices)
    flat_volume = None if volume is None else np.asarray(volume, dtype=np.float64).reshape(-1)
    result = np.zeros(int(np.prod(geometry.volume_shape)))
    n_views, height, width = geometry.sinogram_shape
    for p in range(n_views):
        for v in range(height):
            for u in range(width):
                ray = _trace_ray(matrices[p], u, v, geometry, hardware_interp)
                corrected = True
                if end_correction_rule:
                    points, coefficients = _ray_quadrature(ray, step, corrected=False)
                    indices, weights = _trilinear_weights(points, geometry.volume_shape)
                    corrected = float(np.sum(coefficients[:, None] * weights * flat_volume[indices])) > 0
                points, coefficients = _ray_quadrature(ray, step, corrected)
                indices, weights = _trilinear_weights(points, geometry.volume_shape)
                np.add.at(result, indices, sinogram[p, v, u] * coefficients[:, None] * weights)
    return result.reshape(geometry.volume_shape)


def _bilinear_weights(u: np.ndarray, v: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear corners of detector points ``(u, v)`` (any equal shapes, pixel indices).

    Returns:
        flat indices ``(..., 4)`` into an ``(H, W)`` view and weights ``(..., 4)``; pixels outside
        the detector get weight 0 (zero outside) and index 0.
    """
    u0, v0 = np.floor(u), np.floor(v)
    fu, fv = u - u0, v - v0
    u0, v0 = u0.astype(np.int64), v0.astype(np.int64)
    indices, weights = [], []
    for dv in (0, 1):
        for du in (0, 1):
            cu, cv = u0 + du, v0 + dv
            weight = (fu if du else 1 - fu) * (fv if dv else 1 - fv)
            inside = (cu >= 0) & (cu < width) & (cv >= 0) & (cv < height)
            indices.append(np.where(inside, cv * width + cu, 0))
            weights.append(np.where(inside, weight, 0.0))
    return np.stack(indices, axis=-1), np.stack(weights, axis=-1)


def _voxel_projections(matrix: np.ndarray, geometry: GeometryCone3D) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(u, v, w)`` of every voxel centre for one view, each ``(Z, Y, X)`` (pixels, pixels, mm)."""
    axes = [geometry.volume_origin[a] + np.arange(geometry.volume_shape[a]) * geometry.volume_spacing[a] for a in range(3)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    a, b, w = (matrix[r, 0] * x + matrix[r, 1] * y + matrix[r, 2] * z + matrix[r, 3] for r in range(3))
    return a / w, b / w, w


def reference_backprojection(
    sinogram: np.ndarray,
    geometry: GeometryCone3D,
    projection_matrices: np.ndarray | None = None,
) -> np.ndarray:
    """Voxel-driven FDK-weighted cone-beam back-projection in float64.

    For every voxel centre and view: ``(a, b, w) = P (X, 1)``, bilinear sample of the view at
    ``(a/w, b/w)`` (zero outside), accumulate ``q / w**2``; finally times ``projection_multiplier``.

    Args:
        sinogram: ``(N, H, W)``.
        geometry: scanner with a trajectory set (or pass ``projection_matrices`` ``(N, 3, 4)``).

    Returns:
        ``(Z, Y, X)`` float64.
    """
    sinogram = np.asarray(sinogram, dtype=np.float64)
    if sinogram.shape != geometry.sinogram_shape:
        raise ValueError(f"sinogram must have shape {geometry.sinogram_shape}, got {sinogram.shape}")
    matrices = _matrices(geometry, projection_matrices)
    _, height, width = geometry.sinogram_shape
    volume = np.zeros(geometry.volume_shape)
    for p, matrix in enumerate(matrices):
        u, v, w = _voxel_projections(matrix, geometry)
        indices, weights = _bilinear_weights(u, v, height, width)
        volume += np.sum(sinogram[p].reshape(-1)[indices] * weights, axis=-1) / w**2
    return volume * geometry.projection_multiplier


def reference_backprojection_adjoint(
    volume: np.ndarray,
    geometry: GeometryCone3D,
    projection_matrices: np.ndarray | None = None,
) -> np.ndarray:
    """Exact transpose of :func:`reference_backprojection` in float64.

    Args:
        volume: ``(Z, Y, X)``.

    Returns:
        ``(N, H, W)`` float64.
    """
    volume = np.asarray(volume, dtype=np.float64)
    if volume.shape != geometry.volume_shape:
        raise ValueError(f"volume must have shape {geometry.volume_shape}, got {volume.shape}")
    matrices = _matrices(geometry, projection_matrices)
    n_views, height, width = geometry.sinogram_shape
    sinogram = np.zeros((n_views, height * width))
    for p, matrix in enumerate(matrices):
        u, v, w = _voxel_projections(matrix, geometry)
        indices, weights = _bilinear_weights(u, v, height, width)
        contributions = (volume / w**2)[..., None] * weights * geometry.projection_multiplier
        np.add.at(sinogram[p], indices.reshape(-1), contributions.reshape(-1))
    return sinogram.reshape(geometry.sinogram_shape)
