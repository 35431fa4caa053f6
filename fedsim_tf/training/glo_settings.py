"""Optimisation settings of GLO pre-training (:mod:`fedsim_tf.training.glo`); a plain dataclass, so the
command line is checked before TensorFlow loads."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class GLOSettings:
    """Optimisation settings.

    Attributes:
        seed: run seed (code initialisation and per-step batches).
        batch_size: volumes per step (at most the number of volumes).
        lr_shape: Adam learning rate of ``G_S``.
        lr_material: Adam learning rate of ``G_M``.
        lr_latent: RMSprop learning rate of the codes.
        perceptual_weight: weight of the perceptual term.
        steps: optimisation steps of the run.
        checkpoint_every: steps between checkpoints.
        log_every: steps between TensorBoard scalars (images: 10x rarer).
    """

    seed: int = 0
    batch_size: int = 2
    lr_shape: float = 1e-3
    lr_material: float = 1e-3
    lr_latent: float = 1e-2
    perceptual_weight: float = 1.0
    steps: int = 300
    checkpoint_every: int = 50
    log_every: int = 10

    def __post_init__(self) -> None:
        for name in ("batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"GLOSettings.{name} must be >= 1, got {getattr(self, name)}")
        if self.steps < 0:
            raise ValueError(f"GLOSettings.steps must be >= 0, got {self.steps}")
        for name in ("lr_shape", "lr_material", "lr_latent", "perceptual_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"GLOSettings.{name} must be a finite number >= 0, got {value}")
