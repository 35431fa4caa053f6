"""A Gaussian fitted to GLO latent codes with Ledoit-Wolf shrinkage (sampling new codes, paper Sec. 2.2).

With a few dozen codes a full sample covariance is ill-conditioned, so the covariance is shrunk
towards a scaled identity (Ledoit & Wolf 2004, "A well-conditioned estimator for large-dimensional
covariance matrices"):

* ``S = X_c^T X_c / n`` (maximum-likelihood covariance of the centred codes ``X_c``, ``n`` rows);
* target ``m I`` with ``m = trace(S) / p``;
* ``d^2 = ||S - m I||_F^2``, ``b^2 = min(d^2, (1/n^2) sum_i ||x_i x_i^T - S||_F^2)``;
* ``Sigma = (1 - a) S + a m I`` with shrinkage ``a = b^2 / d^2`` (0 when ``d^2 = 0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsim_tf.atomic import atomic_path


def ledoit_wolf(codes: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrunk covariance.

    Args:
        codes: ``[n, p]`` samples (rows), ``n >= 1``.

    Returns:
        ``(cov, shrinkage)``: ``[p, p]`` float64 covariance and the shrinkage weight in ``[0, 1]``.
    """
    x = np.asarray(codes, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"ledoit_wolf needs [n, p] codes with n >= 1, got shape {x.shape}")
    n, p = x.shape
    centred = x - x.mean(axis=0)
    sample = centred.T @ centred / n
    m = np.trace(sample) / p
    target = m * np.eye(p)
    d2 = float(np.sum((sample - target) ** 2))
    outer = centred[:, :, None] * centred[:, None, :]  # [n, p, p]
    b2 = min(d2, float(np.sum((outer - sample) ** 2)) / n**2)
    shrinkage = b2 / d2 if d2 > 0 else 0.0
    return (1.0 - shrinkage) * sample + shrinkage * target, shrinkage


@dataclass(frozen=True)
class LatentGaussian:
    """A multivariate normal over latent codes.

    Attributes:
        mean: ``(p,)`` float64.
        cov: ``(p, p)`` float64 symmetric positive semi-definite.
        shrinkage: the Ledoit-Wolf weight used (for the record).
    """

    mean: np.ndarray
    cov: np.ndarray
    shrinkage: float

    @classmethod
    def fit(cls, codes: np.ndarray) -> "LatentGaussian":
        """Sample mean and Ledoit-Wolf covariance of ``[n, p]`` codes."""
        cov, shrinkage = ledoit_wolf(codes)
        return cls(np.asarray(codes, dtype=np.float64).mean(axis=0), cov, shrinkage)

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``[count, p]`` float64 draws."""
        return rng.multivariate_normal(self.mean, self.cov, size=count, method="eigh")

    def save(self, path: str) -> None:
        """Write an ``.npz`` atomically (temporary file in the same folder, then rename)."""
        with atomic_path(path) as temporary, open(temporary, "wb") as handle:
            np.savez(handle, mean=self.mean, cov=self.cov, shrinkage=np.float64(self.shrinkage))

    @classmethod
    def load(cls, path: str) -> "LatentGaussian":
        """Read what :meth:`save` wrote."""
        with np.load(path) as data:
            return cls(data["mean"], data["cov"], float(data["shrinkage"]))
