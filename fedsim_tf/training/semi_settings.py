"""Settings of the semi-supervised stage (:mod:`fedsim_tf.training.semi`); a plain dataclass, so the command
line is checked before TensorFlow loads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SemiSettings:
    """How the semi-supervised stage alternates its steps.

    Attributes:
        steps: total steps; even steps are supervised (GLO on the labelled volumes), odd steps
            unsupervised (frozen-GAN losses on the unlabelled volumes).
        unlabelled_batch: unlabelled volumes (one random slice each) per unsupervised step.
        checkpoint_every: steps between checkpoints.
        log_every: steps between TensorBoard scalars.
    """

    steps: int = 400
    unlabelled_batch: int = 2
    checkpoint_every: int = 50
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"SemiSettings.steps must be >= 0, got {self.steps}")
        for name in ("unlabelled_batch", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"SemiSettings.{name} must be >= 1, got {getattr(self, name)}")
