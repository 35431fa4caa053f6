"""Per-site clipping and Gaussian noise of the shared update, and the privacy budget of dp-accounting against
the exact Gaussian-mechanism curve and the classical RDP bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from fedsim_tf.federation.flower.privacy import PrivacySettings, clip, epsilon, privatise


def test_clip_scales_to_the_bound_over_all_arrays() -> None:
    update = [np.array([3.0], np.float32), np.array([[0.0, 4.0]], np.float32)]  # norm 5
    clipped = clip(update, 1.0)
    np.testing.assert_allclose(clipped[0], [0.6], rtol=1e-6)
    np.testing.assert_allclose(clipped[1], [[0.0, 0.8]], rtol=1e-6)
    inside = clip(update, 10.0)
    np.testing.assert_array_equal(inside[1], update[1])


def test_noise_has_the_multiplier_times_the_bound_as_standard_deviation() -> None:
    update = [np.zeros((200, 250), np.float32)]  # 50,000 entries; the zero update is not scaled
    noisy = privatise(update, PrivacySettings(clip=0.5, noise_multiplier=2.0), np.random.default_rng(0))
    std = float(np.std(noisy[0], dtype=np.float64))
    assert abs(std - 1.0) < 0.01  # sigma * C = 1; the sample std of 50,000 draws is within ~0.3 % of it
    assert abs(float(np.mean(noisy[0], dtype=np.float64))) < 0.015


def _exact_epsilon(mu: float, delta: float) -> float:
    """The exact epsilon of a mu-GDP mechanism (Dong, Roth & Su 2019): delta(eps) = Phi(-eps/mu + mu/2) -
    e^eps Phi(-eps/mu - mu/2), solved by bisection."""
    low, high = 0.0, 100.0
    for _ in range(200):
        middle = (low + high) / 2
        d = norm.cdf(-middle / mu + mu / 2) - math.exp(middle) * norm.cdf(-middle / mu - mu / 2)
        low, high = (middle, high) if d > delta else (low, middle)
    return high


def _classical_rdp_bound(sigma: float, rounds: int, delta: float) -> float:
    """min over alpha of rounds * alpha / (2 sigma^2) + log(1/delta) / (alpha - 1) (Mironov 2017)."""
    alphas = np.concatenate([np.linspace(1.01, 10, 2000), np.linspace(10, 1000, 20000)])
    return float(np.min(rounds * alphas / (2 * sigma**2) + math.log(1 / delta) / (alphas - 1)))


@pytest.mark.parametrize("sigma, rounds", [(1.0, 10), (4.0, 100), (0.8, 1)])
def test_epsilon_lies_between_the_exact_curve_and_the_classical_rdp_bound(sigma: float, rounds: int) -> None:
    delta = 1e-5
    reported = epsilon(sigma, rounds, delta)
    exact = _exact_epsilon(math.sqrt(rounds) / sigma, delta)  # R Gaussian mechanisms = one of mu = sqrt(R)/sigma
    assert exact <= reported <= _classical_rdp_bound(sigma, rounds, delta) + 1e-6
    assert reported <= 1.5 * exact  # and RDP is not loose by much here


def test_more_noise_or_fewer_rounds_spend_less() -> None:
    assert epsilon(2.0, 10, 1e-5) < epsilon(1.0, 10, 1e-5)
    assert epsilon(1.0, 5, 1e-5) < epsilon(1.0, 10, 1e-5)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="clip"):
        PrivacySettings(clip=0.0, noise_multiplier=1.0)
    with pytest.raises(ValueError, match="delta"):
        epsilon(1.0, 3, 0.0)
