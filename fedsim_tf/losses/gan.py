"""GauGAN's training losses (Park et al. 2019), on the outputs of the multi-scale discriminator.

The discriminator outputs are ``num_d`` lists (one per scale) of feature maps, the last map of each
list being the patch logits (:func:`fedsim_tf.models.discriminator.build_multiscale_discriminator`).

* Hinge adversarial loss, averaged over the scales (NVlabs ``gan_mode=hinge``):
  discriminator ``mean relu(1 - D(real)) + mean relu(1 + D(fake))`` (:func:`hinge_real_loss`,
  :func:`hinge_fake_loss`), generator ``-mean D(fake)`` (:func:`hinge_generator_loss`).
* Feature matching (:func:`feature_matching_loss`): the L1 distance (mean absolute difference) of
  every intermediate feature map (all but the logits) of the fake and the real image, summed over
  maps and scales, times ``weight / num_d`` (GauGAN: weight 10). The real features carry no gradient.
* The VGG loss on 2-D slices (:func:`vgg_loss`): ``weight`` (GauGAN: 10) times the batch mean of
  :meth:`fedsim_tf.losses.generation.PerceptualLoss.slice_losses` (relu1_1 .. relu5_1 weighted
  ``1/32 .. 1``).

All functions return float32 scalars.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from fedsim_tf.losses.generation import PerceptualLoss

Outputs = Sequence[Sequence[tf.Tensor]]
"""Discriminator outputs: one list of feature maps per scale, the patch logits last."""


def _mean_over_scales(outputs: Outputs, per_scale: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
    return tf.add_n([per_scale(tf.cast(scale[-1], tf.float32)) for scale in outputs]) / len(outputs)


def hinge_real_loss(real_outputs: Outputs) -> tf.Tensor:
    """Discriminator hinge term of real images: ``mean relu(1 - logits)``, averaged over scales."""
    return _mean_over_scales(real_outputs, lambda logits: tf.reduce_mean(tf.nn.relu(1.0 - logits)))


def hinge_fake_loss(fake_outputs: Outputs) -> tf.Tensor:
    """Discriminator hinge term of generated images: ``mean relu(1 + logits)``, averaged over scales."""
    return _mean_over_scales(fake_outputs, lambda logits: tf.reduce_mean(tf.nn.relu(1.0 + logits)))


def hinge_generator_loss(fake_outputs: Outputs) -> tf.Tensor:
    """Generator hinge loss: ``-mean logits`` of generated images, averaged over scales."""
    return _mean_over_scales(fake_outputs, lambda logits: -tf.reduce_mean(logits))


def feature_matching_loss(fake_outputs: Outputs, real_outputs: Outputs, weight: float = 10.0) -> tf.Tensor:
    """``weight / num_d * sum_scales sum_maps mean|F(fake) - F(real)|`` over all maps but the logits.

    Args:
        fake_outputs: discriminator outputs of the generated images.
        real_outputs: discriminator outputs of the real images (same structure and shapes).
        weight: GauGAN's ``lambda_feat``.
    """
    if len(fake_outputs) != len(real_outputs):
        raise ValueError(f"feature matching: {len(fake_outputs)} fake scales but {len(real_outputs)} real scales")
    total = tf.constant(0.0)
    for fake_scale, real_scale in zip(fake_outputs, real_outputs):
        for fake, real in zip(fake_scale[:-1], real_scale[:-1]):
            total += tf.reduce_mean(tf.abs(tf.cast(fake, tf.float32) - tf.stop_gradient(tf.cast(real, tf.float32))))
    return total * (weight / len(fake_outputs))


def vgg_loss(perceptual: PerceptualLoss, generated: tf.Tensor, real: tf.Tensor, weight: float = 10.0) -> tf.Tensor:
    """``weight`` times the mean VGG loss of ``[B, H, W, 1]`` slice pairs on the ``[-1, 1]`` CT scale."""
    return weight * tf.reduce_mean(perceptual.slice_losses(generated, real))
