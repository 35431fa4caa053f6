"""Settings of the GauGAN appearance model and its training (:mod:`fedsim_tf.training.gan`); a plain
dataclass without TensorFlow, so the command line is checked before TensorFlow loads."""

from __future__ import annotations

import math
from dataclasses import dataclass

_POSITIVE_INTS = ("ngf", "num_upsamplings", "spade_hidden", "ndf", "num_d", "n_layers_d", "batch_size")
_POSITIVE_FLOATS = ("lr_g", "lr_d")
_NON_NEGATIVE_FLOATS = ("lambda_feat", "lambda_vgg")
_BETAS = ("beta1", "beta2")


@dataclass(frozen=True)
class GANSettings:
    """Networks and optimisation of one site's GAN (defaults: GauGAN / NVlabs SPADE).

    Attributes:
        ngf: generator base width (GauGAN 64).
        num_upsamplings: x2 upsamplings of the generator; the slice edge must be divisible by
            ``2**num_upsamplings`` (GauGAN ``normal``: 5, a 4x4 start grid for 128^2 slices).
        spade_hidden: channels of the SPADE shared convolutions (GauGAN 128).
        ndf: discriminator base width (GauGAN 64).
        num_d: discriminator scales (GauGAN 2).
        n_layers_d: layers per discriminator scale (GauGAN 4).
        lr_g: Adam learning rate of the generator (TTUR: 1e-4).
        lr_d: Adam learning rate of the discriminator (TTUR: 4e-4).
        beta1: Adam beta_1 of both (NVlabs 0).
        beta2: Adam beta_2 of both (NVlabs 0.9; the paper text: 0.999).
        lambda_feat: weight of the feature-matching loss (GauGAN 10).
        lambda_vgg: weight of the VGG loss when a perceptual backbone is given (GauGAN 10).
        seed: weight initialisation seed.
        batch_size: slices per training step.
        jit_compile: compile the training step with XLA (off: slower than oneDNN graphs on CPU).
    """

    ngf: int = 64
    num_upsamplings: int = 5
    spade_hidden: int = 128
    ndf: int = 64
    num_d: int = 2
    n_layers_d: int = 4
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    beta1: float = 0.0
    beta2: float = 0.9
    lambda_feat: float = 10.0
    lambda_vgg: float = 10.0
    seed: int = 0
    batch_size: int = 1
    jit_compile: bool = False

    def __post_init__(self) -> None:
        for name in (*_POSITIVE_INTS, "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"GANSettings.{name} must be an integer, got {value!r}")
        for name in _POSITIVE_INTS:
            if getattr(self, name) < 1:
                raise ValueError(f"GANSettings.{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ValueError(f"GANSettings.seed must be >= 0, got {self.seed}")
        for name in _POSITIVE_FLOATS:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"GANSettings.{name} must be a finite number > 0, got {value!r}")
        for name in _NON_NEGATIVE_FLOATS:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"GANSettings.{name} must be a finite number >= 0, got {value!r}")
        for name in _BETAS:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value < 1):
                raise ValueError(f"GANSettings.{name} must be in [0, 1), got {value!r}")

    def check_image_size(self, image_size: int) -> None:
        """Raise ``ValueError`` (naming ``num_upsamplings``) unless ``image_size`` fits the generator."""
        factor = 2**self.num_upsamplings
        if image_size < factor or image_size % factor:
            raise ValueError(
                f"slice edge {image_size} is not a positive multiple of 2**num_upsamplings = {factor} "
                f"(num_upsamplings={self.num_upsamplings})"
            )
