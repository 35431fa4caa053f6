"""The latent Gaussian of all sites' codes without the codes leaving the sites: each site sends sums, the
server pools them into exactly what :func:`fedsim_tf.training.latent_gaussian.ledoit_wolf` computes on the
pooled codes (float64).

Two passes (``x_i``: a site's codes, ``c_i = x_i - mu`` centred on the pooled mean ``mu``):

1. every site sends ``n_s`` and ``sum_i x_i`` (:func:`first_moments`); the server forms ``mu``;
2. every site sends ``sum_i c_i c_i^T`` (``[p, p]``) and ``sum_i ||c_i||^4`` (:func:`second_moments`).

With ``S = sum_s sum_i c_i c_i^T / n``: ``sum_i ||c_i c_i^T - S||_F^2 = sum_i ||c_i||^4 - n ||S||_F^2``,
which is all the Ledoit-Wolf shrinkage needs (:func:`pooled_gaussian`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedsim_tf.training.latent_gaussian import LatentGaussian


def first_moments(codes: np.ndarray) -> tuple[int, np.ndarray]:
    """``(n, [p] sum of the rows)`` of a site's ``[n, p]`` codes (float64)."""
    x = np.asarray(codes, np.float64)
    return int(x.shape[0]), x.sum(axis=0)


def second_moments(codes: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, float]:
    """``([p, p] sum of c c^T, sum of ||c||^4)`` of a site's codes centred on the pooled ``[p]`` mean."""
    c = np.asarray(codes, np.float64) - np.asarray(mean, np.float64)
    return c.T @ c, float(np.sum(np.sum(c * c, axis=1) ** 2))


def pooled_mean(counts: Sequence[int], sums: Sequence[np.ndarray]) -> np.ndarray:
    """``[p]`` mean of all sites' codes.

    Raises:
        ValueError: no code at all.
    """
    total = int(sum(counts))
    if total < 1:
        raise ValueError("the sites reported no code")
    return np.sum(np.asarray(sums, np.float64), axis=0) / total


def pooled_gaussian(counts: Sequence[int], mean: np.ndarray, scatters: Sequence[np.ndarray],
                    fourths: Sequence[float]) -> LatentGaussian:
    """The Ledoit-Wolf Gaussian of all sites' codes from their moments (module docstring)."""
    n = int(sum(counts))
    sample = np.sum(np.asarray(scatters, np.float64), axis=0) / n
    p = sample.shape[0]
    m = np.trace(sample) / p
    target = m * np.eye(p)
    d2 = float(np.sum((sample - target) ** 2))
    b2 = min(d2, max(0.0, float(sum(fourths)) - n * float(np.sum(sample**2))) / n**2)
    shrinkage = b2 / d2 if d2 > 0 else 0.0
    return LatentGaussian(np.asarray(mean, np.float64), (1.0 - shrinkage) * sample + shrinkage * target, shrinkage)
