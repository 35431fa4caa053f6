"""GauGAN's multi-scale PatchGAN discriminator (pix2pixHD / NVlabs SPADE ``multiscale`` + ``n_layer``).

The input is the conditioning map concatenated with a CT slice (``[B, H, W, C + 1]``). Scale 0 sees
it at full resolution; every further scale sees it after a 3x3 average pooling with stride 2 and one
pixel of padding that is excluded from the average (:class:`AveragePoolExcludePad`).

Each scale is a PatchGAN of ``n_layers + 1`` 4x4 convolutions, each with 2 pixels of zero padding:
``ndf`` stride 2 (no normalisation) -> ``min(2 ndf, 512)`` stride 2 -> ... -> the last of the
``n_layers`` with stride 1 -> 1 channel stride 1 (the patch logits). With the defaults (``ndf = 64``,
``n_layers = 4``): 64 s2 -> 128 s2 -> 256 s2 -> 512 s1 -> 1. The middle convolutions are spectrally
normalised, have no bias and are followed by a parameter-free instance normalisation (NVlabs
``spectralinstance``); the first and last are plain convolutions with a bias. LeakyReLU(0.2) follows
every convolution but the last.

The model returns every intermediate feature map of every scale (``num_d`` lists of
``n_layers + 1`` tensors, the last of each list being the logits), which the feature-matching
loss needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from fedsim_tf.models.spade import LeakyReLU, gaugan_initializer, image_shape, instance_norm

KERNEL_SIZE = 4
PADDING = 2  # ceil((KERNEL_SIZE - 1) / 2), as pix2pixHD
MAX_FILTERS = 512


@keras.saving.register_keras_serializable(package="fedsim_tf")
class AveragePoolExcludePad(keras.layers.Layer):
    """3x3 average pooling with stride 2 and one pixel of padding on every side, padding not counted.

    ``[B, H, W, C] -> [B, ceil(H / 2), ceil(W / 2), C]``; output pixel ``(i, j)`` is the mean of the
    input pixels ``(2i - 1 .. 2i + 1, 2j - 1 .. 2j + 1)`` that exist.
    """

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        pad = [[0, 0], [1, 1], [1, 1], [0, 0]]
        totals = tf.nn.avg_pool2d(tf.pad(inputs, pad), 3, 2, "VALID")
        counts = tf.nn.avg_pool2d(tf.pad(tf.ones_like(inputs[:1, :, :, :1]), pad), 3, 2, "VALID")
        return totals / counts

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], (input_shape[1] + 1) // 2, (input_shape[2] + 1) // 2, input_shape[3])


def _patch_discriminator(x: keras.KerasTensor, ndf: int, n_layers: int, prefix: str) -> list[keras.KerasTensor]:
    features = []
    filters = ndf
    for index in range(n_layers + 1):
        first, last = index == 0, index == n_layers
        if not first and not last:
            filters = min(2 * filters, MAX_FILTERS)
        conv = keras.layers.Conv2D(
            1 if last else filters, KERNEL_SIZE, strides=2 if first or index < n_layers - 1 else 1,
            use_bias=first or last, kernel_initializer=gaugan_initializer(), name=f"{prefix}_conv_{index}",
        )
        x = keras.layers.ZeroPadding2D(PADDING, name=f"{prefix}_pad_{index}")(x)
        if first or last:
            x = conv(x)
        else:
            x = keras.layers.SpectralNormalization(conv, name=f"{prefix}_conv_{index}_sn")(x)
            x = instance_norm(name=f"{prefix}_norm_{index}")(x)
        if not last:
            x = LeakyReLU(name=f"{prefix}_lrelu_{index}")(x)
        features.append(x)
    return features


def build_multiscale_discriminator(
    image_size: int | Sequence[int],
    condition_channels: int = 10,
    image_channels: int = 1,
    ndf: int = 64,
    n_layers: int = 4,
    num_d: int = 2,
    name: str = "multiscale_discriminator",
) -> keras.Model:
    """Multi-scale PatchGAN (see the module docstring).

    Args:
        image_size: ``H = W`` (or ``(H, W)``) of the slices in pixels.
        condition_channels: ``C``, channels of the conditioning map.
        image_channels: channels of the judged image (1 for CT).
        ndf: width of the first convolution of every scale.
        n_layers: strided/normalised layers per scale (GauGAN: 4).
        num_d: number of scales (GauGAN: 2).
        name: model name.

    Returns:
        A functional model ``[condition [B, H, W, C], image [B, H, W, image_channels]] ->``
        ``num_d`` lists of ``n_layers + 1`` feature maps ``[B, h, w, c]`` (scale 0 first; the last
        map of each list is the ``[B, h, w, 1]`` patch logits).

    Raises:
        ValueError: a non-positive size, width or count.
    """
    height, width = image_shape(image_size)
    if min(height, width, condition_channels, image_channels, ndf, n_layers, num_d) < 1:
        raise ValueError(
            f"image_size, condition_channels, image_channels, ndf, n_layers and num_d must be >= 1; got "
            f"{(height, width)}, {condition_channels}, {image_channels}, {ndf}, {n_layers}, {num_d}"
        )
    condition = keras.Input((height, width, condition_channels), name="condition")
    image = keras.Input((height, width, image_channels), name="image")
    x = keras.layers.Concatenate(name="condition_and_image")([condition, image])
    outputs = []
    for scale in range(num_d):
        if scale:
            x = AveragePoolExcludePad(name=f"downsample_{scale}")(x)
        outputs.append(_patch_discriminator(x, ndf, n_layers, f"scale_{scale}"))
    return keras.Model([condition, image], outputs, name=name)
