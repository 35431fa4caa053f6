"""Flags of the site GANs' networks and optimisation (GauGAN), shared by the stages that train them
(``pretrain_gan``, ``federated``); each stage has its own step count."""

from __future__ import annotations

from absl import flags

from fedsim_tf.errors import UserInputError
from fedsim_tf.options import CommonConfig
from fedsim_tf.training.gan_settings import GANSettings

flags.DEFINE_integer("gan_batch", 4, "G_GAN: slices per training step.", lower_bound=1)
flags.DEFINE_integer("ngf", 64, "G_GAN: generator base width (GauGAN: 64).", lower_bound=1)
flags.DEFINE_integer("gan_upsamplings", 5, "G_GAN: x2 upsamplings of the generator; the slice edge must be a "
                     "multiple of 2^this (GauGAN: 5).", lower_bound=1)
flags.DEFINE_integer("spade_hidden", 128, "G_GAN: channels of the SPADE shared convolutions (GauGAN: 128).",
                     lower_bound=1)
flags.DEFINE_integer("ndf", 64, "G_GAN: discriminator base width (GauGAN: 64).", lower_bound=1)
flags.DEFINE_float("lr_g", 1e-4, "G_GAN: Adam learning rate of the generator (TTUR).")
flags.DEFINE_float("lr_d", 4e-4, "G_GAN: Adam learning rate of the discriminator (TTUR).")
flags.DEFINE_float("gan_beta1", 0.0, "G_GAN: Adam beta_1 of both networks (NVlabs SPADE: 0).")
flags.DEFINE_float("gan_beta2", 0.9, "G_GAN: Adam beta_2 of both networks (NVlabs SPADE: 0.9; the paper text: 0.999).")
flags.DEFINE_float("lambda_feat", 10.0, "G_GAN: weight of the feature-matching loss.", lower_bound=0.0)
flags.DEFINE_float("lambda_vgg", 10.0, "G_GAN: weight of the VGG loss (with a --perceptual backbone).",
                   lower_bound=0.0)
flags.DEFINE_bool("gan_jit", False, "G_GAN: compile the training step with XLA.")

FLAGS = flags.FLAGS


def gan_settings_from_flags(common: CommonConfig) -> GANSettings:
    """The GAN flags as :class:`GANSettings`; raises :class:`UserInputError` naming the bad flag."""
    try:
        settings = GANSettings(
            ngf=FLAGS.ngf, num_upsamplings=FLAGS.gan_upsamplings, spade_hidden=FLAGS.spade_hidden, ndf=FLAGS.ndf,
            lr_g=FLAGS.lr_g, lr_d=FLAGS.lr_d, beta1=FLAGS.gan_beta1, beta2=FLAGS.gan_beta2,
            lambda_feat=FLAGS.lambda_feat, lambda_vgg=FLAGS.lambda_vgg, seed=common.seed,
            batch_size=FLAGS.gan_batch, jit_compile=FLAGS.gan_jit,
        )
        settings.check_image_size(common.volume_size)
    except ValueError as error:
        raise UserInputError(f"GAN flags (--ngf, --gan_upsamplings, --lr_g, --gan_beta1, ...): {error}") from error
    return settings
