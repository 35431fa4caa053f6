"""Coherent point drift (CPD) registration in NumPy: similarity and deformable.

Follows the EM formulation of Myronenko & Song (IEEE TPAMI 2010): the moving (source) points
``Y`` are centroids of an isotropic Gaussian mixture with variance ``sigma2``, plus a uniform
outlier component of weight ``w``; the target points ``X`` are the data. The E-step computes
posteriors ``P[m, n]``; the M-step updates the transform and ``sigma2`` in closed form.

Structure-aware ("grouped") registration: source and target points carry a group label (the
heart structure); posteriors are computed within each group only (block-diagonal ``P``), so a
left-atrium point is only ever matched to left-atrium points. One similarity transform is shared
by all groups; the deformable step is run per group.

All coordinates are world mm, arrays ``(K, 3)`` float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _Posterior:
    """Sufficient statistics of one E-step: ``P1 = P @ 1`` ``(M,)``, ``Pt1 = P.T @ 1``
    ``(N,)``, ``PX = P @ X`` ``(M, 3)``."""

    p1: np.ndarray
    pt1: np.ndarray
    px: np.ndarray


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` squared Euclidean distances of ``(K, 3)`` point sets."""
    d2 = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d2, 0.0)


def _posterior(x: np.ndarray, y: np.ndarray, sigma2: float, outlier_weight: float) -> _Posterior:
    """CPD E-step for one group: ``x`` ``(N, 3)`` targets, ``y`` ``(M, 3)`` moved sources."""
    d2 = _squared_distances(y, x)
    kernel = np.exp(-d2 / (2.0 * sigma2))
    c = (2.0 * np.pi * sigma2) ** 1.5 * outlier_weight / (1.0 - outlier_weight) * len(y) / len(x)
    p = kernel / (kernel.sum(axis=0, keepdims=True) + c)
    return _Posterior(p.sum(axis=1), p.sum(axis=0), p @ x)


def _grouped_posterior(
    xs: list[np.ndarray], ys: list[np.ndarray], sigma2: float, outlier_weight: float
) -> _Posterior:
    """E-step over groups (block-diagonal ``P``), concatenated in group order."""
    parts = [_posterior(x, y, sigma2, outlier_weight) for x, y in zip(xs, ys)]
    return _Posterior(
        np.concatenate([q.p1 for q in parts]),
        np.concatenate([q.pt1 for q in parts]),
        np.concatenate([q.px for q in parts]),
    )


def _initial_sigma2(xs: list[np.ndarray], ys: list[np.ndarray]) -> float:
    """Mean squared distance over all same-group pairs, divided by the dimension (3)."""
    total = sum(_squared_distances(y, x).sum() for x, y in zip(xs, ys))
    pairs = sum(len(x) * len(y) for x, y in zip(xs, ys))
    return float(total / (3.0 * pairs))


def weighted_similarity(
    x: np.ndarray, y: np.ndarray, post: _Posterior
) -> tuple[float, np.ndarray, np.ndarray, float]:
    """Closed-form similarity M-step (also plain Umeyama when ``P`` is the identity).

    Args:
        x: ``(N, 3)`` targets; y: ``(M, 3)`` sources; post: E-step statistics.

    Returns:
        ``(scale, rotation (3, 3), translation (3,), residual)`` minimising
        ``sum P[m, n] |x_n - (s R y_m + t)|^2``, and that minimum divided by ``sum P``.
    """
    n_p = post.p1.sum()
    mu_x = post.pt1 @ x / n_p
    mu_y = post.p1 @ y / n_p
    y_hat = y - mu_y
    a = post.px.T @ y_hat  # = sum P[m, n] (x_n - mu_x)(y_m - mu_y)^T since P1 @ y_hat = 0
    u, s, vt = np.linalg.svd(a)
    c = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ c @ vt
    trace = float((s * np.diag(c)).sum())
    scale = trace / float(post.p1 @ (y_hat**2).sum(axis=1))
    translation = mu_x - scale * rotation @ mu_y
    residual = (float(post.pt1 @ ((x - mu_x) ** 2).sum(axis=1)) - scale * trace) / n_p
    return scale, rotation, translation, max(residual, 0.0)


def umeyama(target: np.ndarray, source: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity between corresponding ``(K, 3)`` point sets.

    Returns:
        ``(scale, rotation (3, 3), translation (3,))`` minimising
        ``sum_k |target_k - (scale * rotation @ source_k + translation)|^2``.
    """
    ones = np.ones(len(source))
    scale, rotation, translation, _ = weighted_similarity(target, source, _Posterior(ones, ones, target))
    return scale, rotation, translation


def cpd_similarity(
    targets: list[np.ndarray],
    sources: list[np.ndarray],
    init: tuple[float, np.ndarray, np.ndarray],
    iterations: int = 40,
    outlier_weight: float = 0.05,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Grouped similarity CPD.

    Args:
        targets: per group ``(N_g, 3)`` target points (mm).
        sources: per group ``(M_g, 3)`` source points (mm), moved by the transform.
        init: initial ``(scale, rotation (3, 3), translation (3,))``.
        iterations: EM iterations.
        outlier_weight: uniform outlier share ``w`` in ``[0, 1)``.

    Returns:
        ``(scale, rotation, translation)`` with ``x ~ scale * rotation @ y + translation``.
    """
    x = np.concatenate(targets)
    y = np.concatenate(sources)
    splits = np.cumsum([len(s) for s in sources])[:-1]
    scale, rotation, translation = init
    moved = np.split(scale * y @ rotation.T + translation, splits)
    sigma2 = _initial_sigma2(targets, moved)
    for _ in range(iterations):
        post = _grouped_posterior(targets, moved, sigma2, outlier_weight)
        # Targets are concatenated group by group, matching the block-diagonal P.
        scale, rotation, translation, residual = weighted_similarity(x, y, post)
        moved = np.split(scale * y @ rotation.T + translation, splits)
        sigma2 = max(residual / 3.0, 1e-6)
    return scale, rotation, translation


def _gaussian_kernel(a: np.ndarray, b: np.ndarray, beta: float) -> np.ndarray:
    """``(len(a), len(b))`` Gaussian kernel ``exp(-|a_i - b_j|^2 / (2 beta^2))``."""
    return np.exp(-_squared_distances(a, b) / (2.0 * beta**2))


def _conjugate_gradient(
    g: np.ndarray, diagonal: np.ndarray, rhs: np.ndarray, start: np.ndarray, max_iter: int = 60, rtol: float = 1e-8
) -> np.ndarray:
    """Solve ``(g + diag(diagonal)) X = rhs`` for SPD ``g + diag(diagonal)`` by Jacobi-
    preconditioned conjugate gradients, all ``rhs`` columns at once, warm-started at ``start``.

    Matrix-vector products only: per-iteration dense factorisations are avoided because small
    LAPACK calls are very slow on oversubscribed multi-threaded BLAS.
    """
    inv_diag = 1.0 / (1.0 + diagonal)[:, None]  # the Gaussian kernel has a unit diagonal
    x = start.copy()
    r = rhs - (g @ x + diagonal[:, None] * x)
    z = inv_diag * r
    p = z.copy()
    rz = (r * z).sum(axis=0)
    stop = rtol * np.linalg.norm(rhs, axis=0)
    for _ in range(max_iter):
        if np.all(np.linalg.norm(r, axis=0) <= stop):
            break
        ap = g @ p + diagonal[:, None] * p
        alpha = rz / np.maximum((p * ap).sum(axis=0), 1e-300)
        x += alpha * p
        r -= alpha * ap
        z = inv_diag * r
        rz_new = (r * z).sum(axis=0)
        p = z + rz_new / np.maximum(rz, 1e-300) * p
        rz = rz_new
    return x


def cpd_deformable(
    target: np.ndarray,
    source: np.ndarray,
    beta: float = 20.0,
    lam: float = 2.0,
    iterations: int = 50,
    outlier_weight: float = 0.05,
) -> np.ndarray:
    """Deformable (Gaussian-kernel) CPD of one group.

    Args:
        target: ``(N, 3)`` target points (mm).
        source: ``(M, 3)`` source (control) points (mm).
        beta: kernel width of the displacement field (mm); larger is smoother.
        lam: regularisation weight (larger is stiffer).
        iterations: EM iterations.
        outlier_weight: uniform outlier share.

    Returns:
        ``(M, 3)`` kernel weights ``W``: the displacement at any point ``z`` is
        ``sum_m exp(-|z - source_m|^2 / (2 beta^2)) W[m]`` (see :func:`displacement`).
    """
    g = _gaussian_kernel(source, source, beta)
    w = np.zeros_like(source)
    moved = source.copy()
    sigma2 = _initial_sigma2([target], [moved])
    for _ in range(iterations):
        post = _posterior(target, moved, sigma2, outlier_weight)
        # (d(P1) G + lam sigma2 I) W = PX - d(P1) Y, divided by P1: an SPD system.
        p1 = np.maximum(post.p1, 1e-10)
        w = _conjugate_gradient(g, lam * sigma2 / p1, post.px / p1[:, None] - source, w)
        moved = source + g @ w
        n_p = post.p1.sum()
        sigma2 = float(
            post.pt1 @ (target**2).sum(axis=1) - 2.0 * (post.px * moved).sum() + post.p1 @ (moved**2).sum(axis=1)
        ) / (3.0 * n_p)
        sigma2 = max(sigma2, 1e-6)
    return w


def displacement(points: np.ndarray, source: np.ndarray, weights: np.ndarray, beta: float) -> np.ndarray:
    """Evaluate a deformable-CPD displacement field.

    Args:
        points: ``(K, 3)`` where to evaluate (mm).
        source: ``(M, 3)`` control points used in :func:`cpd_deformable`.
        weights: ``(M, 3)`` its result.
        beta: the same kernel width (mm).

    Returns:
        ``(K, 3)`` displacements in mm.
    """
    return _gaussian_kernel(points, source, beta) @ weights
