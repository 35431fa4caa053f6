"""Settings of the federated stage (:mod:`fedsim_tf.training.federated`); a plain dataclass, so the command
line is checked before TensorFlow loads."""

from __future__ import annotations

import math
from dataclasses import dataclass

SERVER_OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")


@dataclass(frozen=True)
class FederatedSettings:
    """The schedule of federated simulation and the server's optimiser.

    Attributes:
        pretrain_rounds: rounds of federated GLO pre-training (every site takes one GLO step on its
            labelled volumes per round).
        gan_steps: GAN pre-training steps of every site's own GAN (local, between the two round phases).
        semi_rounds: semi-supervised rounds after the GAN phase; even ones supervised (as pre-training),
            odd ones unsupervised (every site's frozen-GAN step on its unlabelled volumes).
        unlabelled_batch: unlabelled volumes (one random slice each) per site per unsupervised round.
        server_optimizer: ``adam`` (default) or ``sgd``: the server's optimiser of ``G_S`` and ``G_M``.
        server_lr: its learning rate.
        checkpoint_every: rounds between checkpoints.
        log_every: rounds between TensorBoard scalars.
    """

    pretrain_rounds: int = 300
    gan_steps: int = 2000
    semi_rounds: int = 400
    unlabelled_batch: int = 2
    server_optimizer: str = "adam"
    server_lr: float = 1e-3
    checkpoint_every: int = 50
    log_every: int = 10

    def __post_init__(self) -> None:
        for name in ("pretrain_rounds", "semi_rounds"):
            if getattr(self, name) < 0:
                raise ValueError(f"FederatedSettings.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("gan_steps", "unlabelled_batch", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"FederatedSettings.{name} must be >= 1, got {getattr(self, name)}")
        if self.server_optimizer not in SERVER_OPTIMIZERS:
            raise ValueError(f"FederatedSettings.server_optimizer must be one of {SERVER_OPTIMIZERS}, "
                             f"got {self.server_optimizer!r}")
        if not (math.isfinite(self.server_lr) and self.server_lr > 0):
            raise ValueError(f"FederatedSettings.server_lr must be positive, got {self.server_lr}")

    @property
    def total_rounds(self) -> int:
        return self.pretrain_rounds + self.semi_rounds

    def supervised(self, round_index: int) -> bool:
        """Whether round ``round_index`` (0-based over both phases) is a supervised (GLO) round."""
        return round_index < self.pretrain_rounds or (round_index - self.pretrain_rounds) % 2 == 0
