"""Losses of the shape/material pre-training (paper Sec. 2.2): soft IoU and the VGG-19 perceptual loss.

* :func:`iou_loss`: ``L_IoU = 1 - sum(Y_z Y) / sum(Y_z + Y - Y_z Y)`` per volume (the paper's
  formula with the sums written out), for binary (or soft) heart masks.
* :class:`PerceptualLoss`: the SPADE/pix2pixHD VGG loss on CT slices: L1 distances of the
  ``block{1..5}_conv1`` activations (relu1_1 .. relu5_1) weighted ``1/32, 1/16, 1/8, 1/4, 1``.
* :func:`perceptual_backbone`: which feature network runs (``vgg19`` ImageNet weights, a local
  weights file, ``none``, or ``auto``); the choice is reported in plain words.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import keras
import tensorflow as tf

from fedsim_tf.errors import UserInputError
from fedsim_tf.losses.perceptual_spec import check_perceptual_spec

VGG_LAYERS: tuple[str, ...] = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
VGG_LAYER_WEIGHTS: tuple[float, ...] = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
VGG_NOTOP_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
"""File name under which Keras caches the ImageNet VGG-19 weights without the classifier."""
IMAGENET_BGR_MEAN: tuple[float, float, float] = (103.939, 116.779, 123.68)


def iou_loss(pred: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Per-volume ``1 - soft IoU``.

    Args:
        pred: ``[B, Z, Y, X]`` generated mask in ``[0, 1]`` (binary from the shape op).
        target: ``[B, Z, Y, X]`` real binary heart mask.

    Returns:
        ``[B]`` losses in ``[0, 1]``; two empty masks score 0 (perfect).
    """
    pred = tf.cast(pred, tf.float32)
    target = tf.cast(target, tf.float32)
    axes = list(range(1, pred.shape.rank))
    intersection = tf.reduce_sum(pred * target, axis=axes)
    union = tf.reduce_sum(pred, axis=axes) + tf.reduce_sum(target, axis=axes) - intersection
    return 1.0 - tf.math.divide_no_nan(intersection, union) - tf.cast(union == 0, tf.float32)


class PerceptualBackbone(NamedTuple):
    """A feature network for :class:`PerceptualLoss` and a plain description of it.

    Attributes:
        model: maps ``[N, S, S, 3]`` ImageNet-preprocessed images to a list of feature maps, or
            ``None`` when the perceptual term is off.
        description: one line saying which weights run (for the log).
    """

    model: keras.Model | None
    description: str


def keras_cache_file(name: str) -> str:
    """Where Keras keeps the downloaded file ``name`` (``$KERAS_HOME/models`` or ``~/.keras/models``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models", name)


def vgg19_features(weights: str | None, image_size: int) -> keras.Model:
    """VGG-19 convolutional trunk returning the :data:`VGG_LAYERS` activations.

    Args:
        weights: ``"imagenet"`` (Keras download/cache), a local weights file, or ``None`` (random).
        image_size: ``S``, edge of the square input images (>= 32).
    """
    vgg = keras.applications.VGG19(include_top=False, weights=weights, input_shape=(image_size, image_size, 3))
    vgg.trainable = False
    return keras.Model(vgg.input, [vgg.get_layer(name).output for name in VGG_LAYERS], name="vgg19_features")


def perceptual_backbone(spec: str, image_size: int) -> PerceptualBackbone:
    """Resolve ``--perceptual``.

    Args:
        spec: a choice of :mod:`fedsim_tf.losses.perceptual_spec` (``vgg19``, a weights file,
            ``none`` or ``auto``).
        image_size: edge of the slices fed to the network.

    Raises:
        UserInputError: ``vgg19`` weights that cannot be obtained, or a weights path that does not
            exist or does not fit VGG-19.
    """
    check_perceptual_spec(spec)
    if spec == "none":
        return PerceptualBackbone(None, "perceptual loss off (--perceptual=none)")
    if spec == "auto":
        cached = keras_cache_file(VGG_NOTOP_FILE)
        if not os.path.isfile(cached):
            return PerceptualBackbone(
                None, f"perceptual loss off: --perceptual=auto found no VGG-19 ImageNet weights at {cached}"
            )
        return PerceptualBackbone(
            vgg19_features(cached, image_size), f"perceptual loss: VGG-19 ImageNet weights from {cached}"
        )
    if spec == "vgg19":
        try:
            model = vgg19_features("imagenet", image_size)
        except Exception as error:  # network or cache failures surface as many exception types
            raise UserInputError(
                f"--perceptual=vgg19: cannot obtain the ImageNet VGG-19 weights ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}); pass a local file or --perceptual=none"
            ) from error
        return PerceptualBackbone(model, "perceptual loss: VGG-19 ImageNet weights (keras.applications)")
    try:
        model = vgg19_features(spec, image_size)
    except Exception as error:  # h5py/keras raise various types on a mismatching file
        raise UserInputError(f"--perceptual={spec}: not VGG-19 weights ({type(error).__name__})") from error
    return PerceptualBackbone(model, f"perceptual loss: VGG-19 weights from {spec}")


class PerceptualLoss:
    """SPADE-style VGG feature loss on CT slices, for 2-D slices and for volumes.

    Every ``[H, W]`` slice on the ``[-1, 1]`` CT scale is resized bilinearly to ``image_size^2``,
    mapped to grey RGB in ``[0, 255]`` and ImageNet-preprocessed (BGR mean subtraction); the loss of
    a pair of slices is ``sum_l w_l mean|F_l(a) - F_l(b)|`` (mean over positions and channels; the
    target's features carry no gradient).

    * :meth:`slice_losses`: one loss per pair of ``[N, H, W, 1]`` slices (the GAN's VGG term).
    * ``__call__``: one loss per pair of ``[B, Z, Y, X]`` volumes, the mean over ``slices`` evenly
      spaced axial slices (GLO pre-training).

    Args:
        features: model from ``[N, S, S, 3]`` images to a list of feature maps.
        layer_weights: one weight per feature map.
        image_size: ``S``.
        slices: number of axial slices per volume.
    """

    def __init__(
        self,
        features: keras.Model,
        layer_weights: tuple[float, ...] = VGG_LAYER_WEIGHTS,
        image_size: int = 32,
        slices: int = 4,
    ) -> None:
        if len(features.outputs) != len(layer_weights):
            raise ValueError(f"{len(features.outputs)} feature maps but {len(layer_weights)} layer weights")
        self.features = features
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.image_size = int(image_size)
        self.slices = int(slices)

    def slice_images(self, slices: tf.Tensor) -> tf.Tensor:
        """``[N, H, W, 1]`` CT slices in ``[-1, 1]`` -> ``[N, S, S, 3]`` preprocessed images."""
        resized = tf.image.resize(tf.cast(slices, tf.float32), [self.image_size, self.image_size], method="bilinear")
        grey = (resized + 1.0) * 127.5
        return tf.concat([grey - mean for mean in IMAGENET_BGR_MEAN], axis=-1)

    def slice_losses(self, generated: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        """Per-slice losses ``[N]`` between ``[N, H, W, 1]`` slices (CT scale ``[-1, 1]``)."""
        count = tf.shape(generated)[0]
        both = self.features(tf.concat([self.slice_images(generated), self.slice_images(target)], axis=0))
        total = tf.zeros([count])
        for weight, feature in zip(self.layer_weights, both):
            distance = tf.abs(feature[:count] - tf.stop_gradient(feature[count:]))
            total += weight * tf.reduce_mean(tf.reshape(distance, [count, -1]), axis=1)
        return total

    def volume_slices(self, volume: tf.Tensor) -> tf.Tensor:
        """``[B, Z, Y, X]`` -> ``[B * slices, Y, X, 1]``: the evenly spaced axial slices, volume by volume."""
        depth = volume.shape[1]
        index = [int(round((k + 0.5) * depth / self.slices - 0.5)) for k in range(self.slices)]
        picked = tf.gather(volume, index, axis=1)  # [B, k, Y, X]
        return tf.reshape(picked, [-1, volume.shape[2], volume.shape[3], 1])

    def __call__(self, generated: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        """Per-volume losses ``[B]`` between ``[B, Z, Y, X]`` volumes (CT scale ``[-1, 1]``)."""
        losses = self.slice_losses(self.volume_slices(generated), self.volume_slices(target))
        return tf.reduce_mean(tf.reshape(losses, [-1, self.slices]), axis=1)
