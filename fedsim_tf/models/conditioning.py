"""The input of the site GAN ``G_GAN`` (paper Sec. 2.1, "CT Volume Enhancement"): for slice ``k`` of
``K``, the trilinearly upsampled slice ``k`` of the coarse CT, slice ``k`` of the label map one-hot over
the 8 classes (background + 7 structures), and a constant plane ``k / K``, concatenated channels-last.

Axis orders: volumes ``[B, Z, Y, X]``; slices are axial (``Z`` is the slice axis ``k``); conditioning
maps ``[N, Y, X, C]`` with ``C`` = :data:`CONDITION_CHANNELS` in the order ct, labels 0..7, ``k / K``.
Everything is differentiable with respect to the CT (the semi-supervised stage trains ``G_M``
through it).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from fedsim_tf.anatomy import NUM_STRUCTURES

NUM_CLASSES = NUM_STRUCTURES + 1
CONDITION_CHANNELS = 1 + NUM_CLASSES + 1


def trilinear_upsample(volume: tf.Tensor, shape: Sequence[int]) -> tf.Tensor:
    """Trilinear resampling of ``[B, c, c, c]`` volumes to ``[B, Z, Y, X]`` = ``shape``.

    Voxel centres follow the block-mean convention of :func:`fedsim_tf.data.preprocess.coarse_grid`
    (a coarse voxel's centre is the centre of its block of fine voxels; half-pixel centres), and values
    beyond the outermost coarse centres are held constant. Composed of two bilinear resizes, over
    ``(Y, X)`` and then over ``Z``.
    """
    volume = tf.convert_to_tensor(volume, tf.float32)
    batch, depth, height, width = (volume.shape[i] for i in range(4))
    out_z, out_y, out_x = (int(n) for n in shape)
    planes = tf.reshape(volume, [-1, height, width, 1])  # [B * c, h, w, 1]
    planes = tf.image.resize(planes, (out_y, out_x), method="bilinear")  # [B * c, Y, X, 1]
    columns = tf.transpose(tf.reshape(planes, [-1, depth, out_y, out_x]), [0, 2, 1, 3])  # [B, Y, c, X]
    columns = tf.image.resize(tf.reshape(columns, [-1, depth, out_x, 1]), (out_z, out_x), method="bilinear")
    return tf.transpose(tf.reshape(columns, [-1, out_y, out_z, out_x]), [0, 2, 1, 3])  # [B, Z, Y, X]


def condition_slices(ct_slices: tf.Tensor, label_slices: tf.Tensor, k: tf.Tensor, depth: int) -> tf.Tensor:
    """Conditioning maps of slices.

    Args:
        ct_slices: ``[N, Y, X]`` CT slices on the label grid, ``[-1, 1]`` scale (upsampled coarse CT,
            or a full-resolution simulation).
        label_slices: ``[N, Y, X]`` integer label indices 0..7.
        k: ``[N]`` slice indices.
        depth: ``K``, the number of slices of the volumes.

    Returns:
        ``[N, Y, X, 10]`` float32: ct, one-hot labels (8), ``k / K``.
    """
    one_hot = tf.one_hot(tf.cast(label_slices, tf.int32), NUM_CLASSES, dtype=tf.float32)
    return condition_from_one_hot(ct_slices, one_hot, k, depth)


def condition_from_one_hot(ct_slices: tf.Tensor, one_hot_slices: tf.Tensor, k: tf.Tensor, depth: int) -> tf.Tensor:
    """:func:`condition_slices` from one-hot labels ``[N, Y, X, 8]`` (float; gradients flow into them, as
    into ``ct_slices``)."""
    ct_slices = tf.convert_to_tensor(ct_slices, tf.float32)
    plane = tf.ones_like(ct_slices) * (tf.cast(tf.reshape(k, [-1, 1, 1]), tf.float32) / float(depth))
    return tf.concat([ct_slices[..., None], tf.cast(one_hot_slices, tf.float32), plane[..., None]], axis=-1)


def condition_volume(ct: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Conditioning maps of every slice of one volume: ``[Z, Y, X]`` CT and labels -> ``[Z, Y, X, 10]``."""
    depth = int(ct.shape[0])
    return condition_slices(ct, labels, tf.range(depth), depth)
