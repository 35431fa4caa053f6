"""The latent Gaussian pooled from the sites' sums equals the Ledoit-Wolf fit of all codes together."""

from __future__ import annotations

import numpy as np

from fedsim_tf.federation.flower import code_moments


def _ledoit_wolf_by_hand(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Ledoit & Wolf (2004) on pooled rows, written out sample by sample in float64."""
    n, p = x.shape
    mean = x.sum(axis=0) / n
    c = x - mean
    sample = sum(np.outer(row, row) for row in c) / n
    m = np.trace(sample) / p
    d2 = np.sum((sample - m * np.eye(p)) ** 2)
    b2 = min(d2, sum(np.sum((np.outer(row, row) - sample) ** 2) for row in c) / n**2)
    a = b2 / d2
    return mean, (1 - a) * sample + a * m * np.eye(p), a


def test_pooled_gaussian_equals_the_fit_of_all_codes() -> None:
    rng = np.random.default_rng(3)
    sites = [rng.normal(0.1 * s, 0.3 + 0.1 * s, (n, 4)) for s, n in enumerate((2, 5, 3))]
    counts, sums = zip(*(code_moments.first_moments(x) for x in sites))
    mean = code_moments.pooled_mean(counts, sums)
    scatters, fourths = zip(*(code_moments.second_moments(x, mean) for x in sites))
    gaussian = code_moments.pooled_gaussian(counts, mean, scatters, fourths)
    expected_mean, expected_cov, expected_shrinkage = _ledoit_wolf_by_hand(np.concatenate(sites))
    assert 0 < expected_shrinkage < 1
    np.testing.assert_allclose(gaussian.mean, expected_mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gaussian.cov, expected_cov, rtol=1e-10, atol=1e-14)
    assert abs(gaussian.shrinkage - expected_shrinkage) < 1e-10


def test_two_identical_codes_per_site_give_zero_scatter_and_a_zero_covariance() -> None:
    # every code equals [1, 2]: mean [1, 2], centred codes zero, covariance zero (d^2 = 0, no shrinkage)
    sites = [np.tile([1.0, 2.0], (2, 1)), np.tile([1.0, 2.0], (3, 1))]
    counts, sums = zip(*(code_moments.first_moments(x) for x in sites))
    assert counts == (2, 3)
    mean = code_moments.pooled_mean(counts, sums)
    np.testing.assert_array_equal(mean, [1.0, 2.0])
    scatters, fourths = zip(*(code_moments.second_moments(x, mean) for x in sites))
    gaussian = code_moments.pooled_gaussian(counts, mean, scatters, fourths)
    np.testing.assert_array_equal(gaussian.cov, np.zeros((2, 2)))
    assert gaussian.shrinkage == 0.0
