"""Flags of the GLO optimisation of ``G_S``, ``G_M`` and the codes, shared by the stages that run it
(``pretrain``, ``semi``, ``federated``); each stage has its own step count."""

from __future__ import annotations

from absl import flags

from fedsim_tf.options import CommonConfig
from fedsim_tf.training.glo_settings import GLOSettings

flags.DEFINE_integer("pretrain_batch", 2, "GLO: labelled volumes per step.", lower_bound=1)
flags.DEFINE_float("lr_shape", 1e-3, "GLO: Adam learning rate of the shape generator G_S.", lower_bound=0.0)
flags.DEFINE_float("lr_material", 1e-3, "GLO: Adam learning rate of the material generator G_M.", lower_bound=0.0)
flags.DEFINE_float("lr_latent", 1e-2, "GLO: RMSprop learning rate of the latent codes.", lower_bound=0.0)
flags.DEFINE_float("perceptual_weight", 1.0, "GLO: weight of the perceptual loss.", lower_bound=0.0)

FLAGS = flags.FLAGS


def glo_settings_from_flags(common: CommonConfig, steps: int) -> GLOSettings:
    """The GLO flags (and the shared --checkpoint_every, --log_every) for a stage of ``steps`` steps."""
    return GLOSettings(seed=common.seed, batch_size=FLAGS.pretrain_batch, lr_shape=FLAGS.lr_shape,
                       lr_material=FLAGS.lr_material, lr_latent=FLAGS.lr_latent,
                       perceptual_weight=FLAGS.perceptual_weight, steps=steps,
                       checkpoint_every=FLAGS.checkpoint_every, log_every=FLAGS.log_every)
