"""Ledoit-Wolf Gaussian of GLO codes against an independent formula and hand-checked cases."""

import numpy as np
import pytest

from fedsim_tf.training.latent_gaussian import LatentGaussian, ledoit_wolf


def _ledoit_wolf_loops(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit & Wolf (2004), Lemma 3.2 / Theorem 3.1, written with explicit loops and the paper's
    normalised Frobenius norm ||A||^2 = tr(A A^T) / p."""
    n, p = x.shape
    xc = x - x.mean(axis=0)
    s = np.zeros((p, p))
    for row in xc:
        s += np.outer(row, row)
    s /= n
    norm2 = lambda a: np.trace(a @ a.T) / p  # noqa: E731
    m = np.trace(s) / p
    d2 = norm2(s - m * np.eye(p))
    b2bar = sum(norm2(np.outer(row, row) - s) for row in xc) / n**2
    b2 = min(b2bar, d2)
    a2 = d2 - b2
    return (b2 / d2) * m * np.eye(p) + (a2 / d2) * s, b2 / d2


def test_ledoit_wolf_matches_the_paper_formula():
    x = np.random.default_rng(4).normal(size=(7, 5)) @ np.diag([1.0, 2.0, 0.5, 1.5, 3.0])
    cov, shrinkage = ledoit_wolf(x)
    expected_cov, expected_shrinkage = _ledoit_wolf_loops(x)
    assert shrinkage == pytest.approx(expected_shrinkage, rel=1e-12)
    assert np.allclose(cov, expected_cov, atol=1e-12)
    assert 0.0 < shrinkage < 1.0
    assert np.all(np.linalg.eigvalsh(cov) > 0)  # well conditioned although n is close to p


def test_ledoit_wolf_two_points_in_one_dimension_by_hand():
    # x = [-1, 1] (p = 1): S = 1, m = 1, d^2 = 0 -> no shrinkage, cov = [[1]].
    cov, shrinkage = ledoit_wolf(np.array([[-1.0], [1.0]]))
    assert shrinkage == 0.0
    assert np.allclose(cov, [[1.0]])


def test_gaussian_round_trip_and_samples(tmp_path):
    codes = np.random.default_rng(5).normal(size=(30, 3)) * [1.0, 0.1, 2.0] + [0.5, -1.0, 0.0]
    gaussian = LatentGaussian.fit(codes)
    assert np.allclose(gaussian.mean, codes.mean(axis=0))
    path = str(tmp_path / "g.npz")
    gaussian.save(path)
    loaded = LatentGaussian.load(path)
    assert np.array_equal(loaded.cov, gaussian.cov) and loaded.shrinkage == gaussian.shrinkage
    assert [p.name for p in tmp_path.iterdir()] == ["g.npz"]  # no temporary file left
    draws = loaded.sample(np.random.default_rng(0), 20000)
    assert np.allclose(draws.mean(axis=0), gaussian.mean, atol=0.05)
    assert np.allclose(np.cov(draws.T), gaussian.cov, atol=0.08)
