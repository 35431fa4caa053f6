"""Optional differential privacy of a site's shared update: per-site L2 clipping and Gaussian noise, added on
the site before the update leaves it, and the privacy budget of the whole schedule (``dp-accounting``).

Mechanism (one per round in which the site sends an update): the update ``g`` (all ``G_S``/``G_M``
gradients as one vector) is clipped to L2 norm at most ``C`` (``g * min(1, C / ||g||)``), then every entry
gets independent ``N(0, (sigma C)^2)`` noise (``sigma``: the noise multiplier). Replacing the site's whole
contribution by zero changes the clipped update by at most ``C`` in L2 norm, so each round is a Gaussian
mechanism of noise multiplier ``sigma`` at site level (add/remove relation); ``R`` rounds compose
(no sampling: every site takes part in every round). :func:`epsilon` reports the budget with the RDP
accountant of ``dp-accounting``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PrivacySettings:
    """``clip``: the L2 bound ``C`` of a site's update; ``noise_multiplier``: ``sigma`` (noise std / ``C``).

    Raises:
        ValueError: a bound or multiplier that is not positive and finite.
    """

    clip: float
    noise_multiplier: float

    def __post_init__(self) -> None:
        for name in ("clip", "noise_multiplier"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"PrivacySettings.{name} must be positive, got {value}")


def clip(update: list[np.ndarray], bound: float) -> list[np.ndarray]:
    """The update scaled to L2 norm (over all arrays) at most ``bound`` (unchanged when inside)."""
    norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in update))
    scale = min(1.0, bound / norm) if norm > 0 else 1.0
    return [np.asarray(g * scale, np.float32) for g in update]


def privatise(update: list[np.ndarray], settings: PrivacySettings, rng: np.random.Generator) -> list[np.ndarray]:
    """Clip the update to ``settings.clip`` and add ``N(0, (noise_multiplier * clip)^2)`` to every entry.

    Args:
        update: one float32 array per shared variable.
        settings: the bound and the noise multiplier.
        rng: the site's random source (seeded from the operating system in a deployment).
    """
    std = settings.noise_multiplier * settings.clip
    return [np.asarray(g + rng.normal(0.0, std, g.shape), np.float32) for g in clip(update, settings.clip)]


def epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """The ``epsilon`` at ``delta`` of ``rounds`` Gaussian mechanisms of ``noise_multiplier`` (RDP accountant).

    Raises:
        ValueError: ``delta`` outside ``(0, 1)`` or a negative number of rounds.
    """
    from dp_accounting import GaussianDpEvent, SelfComposedDpEvent
    from dp_accounting.rdp import RdpAccountant

    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    accountant = RdpAccountant()
    accountant.compose(SelfComposedDpEvent(GaussianDpEvent(noise_multiplier), rounds))
    return float(accountant.get_epsilon(delta))
