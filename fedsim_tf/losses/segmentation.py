"""Segmentation loss: soft Dice + cross-entropy, weighted 1:1 (the nnU-Net default).

All functions take the U-Net's **logits** (see :mod:`fedsim_tf.models.unet3d`):

* one channel (binary): foreground probability ``sigmoid(logit)``, binary cross-entropy, soft
  Dice of the foreground;
* ``C >= 2`` channels: ``softmax`` over the last axis, categorical cross-entropy, soft Dice
  averaged over the foreground classes ``1..C-1``.

Soft Dice is computed per volume, ``(2 sum(p g) + eps) / (sum(p) + sum(g) + eps)``, and averaged
over the batch (matching the per-volume evaluation metric); ``eps`` keeps an empty ground truth
from dividing by zero (a volume with no foreground and no predicted foreground scores 1).
"""

from __future__ import annotations

import tensorflow as tf

SMOOTH = 1e-5


def _probabilities_and_targets(labels: tf.Tensor, logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Foreground probabilities and one-hot targets ``[B, V, K]`` (K foreground channels)."""
    batch = tf.shape(logits)[0]
    channels = logits.shape[-1]
    labels = tf.reshape(tf.cast(labels, tf.int32), [batch, -1])
    logits = tf.reshape(logits, [batch, -1, channels])
    if channels == 1:
        return tf.sigmoid(logits), tf.cast(labels > 0, logits.dtype)[..., None]
    probabilities = tf.nn.softmax(logits, axis=-1)[..., 1:]
    targets = tf.one_hot(labels, channels, dtype=logits.dtype)[..., 1:]
    return probabilities, targets


def soft_dice_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """``1 - mean soft Dice`` over volumes and foreground classes.

    Args:
        labels: ``[B, Z, Y, X]`` integer labels (binary logits: any label > 0 is foreground;
            ``C`` class logits: class indices ``0..C-1``).
        logits: ``[B, Z, Y, X, C]`` float logits.

    Returns:
        Scalar loss in [0, 1].
    """
    probabilities, targets = _probabilities_and_targets(labels, logits)
    intersection = tf.reduce_sum(probabilities * targets, axis=1)
    sizes = tf.reduce_sum(probabilities, axis=1) + tf.reduce_sum(targets, axis=1)
    dice = (2.0 * intersection + SMOOTH) / (sizes + SMOOTH)
    return 1.0 - tf.reduce_mean(dice)


def cross_entropy_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Voxel-mean cross-entropy (binary for 1 channel, categorical otherwise).

    Args:
        labels: ``[B, Z, Y, X]`` integer labels (as in :func:`soft_dice_loss`).
        logits: ``[B, Z, Y, X, C]`` float logits.

    Returns:
        Scalar loss in nats.
    """
    labels = tf.cast(labels, tf.int32)
    if logits.shape[-1] == 1:
        targets = tf.cast(labels > 0, logits.dtype)
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits[..., 0]))
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def dice_ce_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Soft Dice loss + cross-entropy, 1:1 (shapes as in :func:`soft_dice_loss`); scalar."""
    return soft_dice_loss(labels, logits) + cross_entropy_loss(labels, logits)
