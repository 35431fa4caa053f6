"""Settings of the 3D U-Net trainer (:mod:`fedsim_tf.training.segmentation`); a plain dataclass, so the
command line is checked before TensorFlow loads."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from fedsim_tf.models.unet_names import UNET_NAMES

LR_SCHEDULES: tuple[str, ...] = ("poly", "constant")


@dataclass(frozen=True)
class SegmentationSettings:
    """How one fold's U-Net is trained.

    Attributes:
        unet: U-Net configuration (:data:`fedsim_tf.models.unet_names.UNET_NAMES`).
        base_filters: channels of the first convolution (paper: 32).
        batch_size: volumes (or patches) per step (paper: 1 single-site, 3 federated).
        steps: training (or fine-tuning) steps.
        pretrain_steps: steps on synthetic volumes before the fine-tuning ``steps`` (0: none).
        lr: Adam learning rate at the start of each phase.
        lr_schedule: ``poly`` (nnU-Net's ``lr (1 - t/T)^0.9`` per phase) or ``constant``.
        val_every: steps between validations (and checkpoints) of the (fine-)tuning phase.
        augment: random rotation/scale/intensity augmentation.
        patch_size: edge of the random cubic training patches; 0 = whole volumes.
        seed: run seed (weights and per-step batches).
    """

    unet: str = "cicek"
    base_filters: int = 32
    batch_size: int = 1
    steps: int = 2000
    pretrain_steps: int = 0
    lr: float = 1e-3
    lr_schedule: str = "poly"
    val_every: int = 100
    augment: bool = True
    patch_size: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.unet not in UNET_NAMES:
            raise ValueError(f"SegmentationSettings.unet must be one of {', '.join(UNET_NAMES)}, got {self.unet!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"SegmentationSettings.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
                             f"got {self.lr_schedule!r}")
        for name in ("base_filters", "batch_size", "steps", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"SegmentationSettings.{name} must be >= 1, got {getattr(self, name)}")
        if self.pretrain_steps < 0 or self.patch_size < 0:
            raise ValueError("SegmentationSettings.pretrain_steps and patch_size must be >= 0, got "
                             f"{self.pretrain_steps} and {self.patch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"SegmentationSettings.lr must be positive, got {self.lr}")

    @property
    def total_steps(self) -> int:
        return self.pretrain_steps + self.steps

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)
