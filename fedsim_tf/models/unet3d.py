"""3D U-Nets for whole-heart segmentation (the paper's downstream measuring instrument).

Two configurations, chosen by name with :func:`build_unet3d`:

* ``"cicek"`` -- Cicek et al. 2016: ``levels`` resolution levels (4 by default), each two 3x3x3
  convolutions + batch norm + ReLU with the channels doubled before pooling
  (``b-2b | 2b-4b | 4b-8b | 8b-16b``; ``b = 32`` gives the paper's 32-64 | 64-128 | 128-256 | 256-512),
  2x2x2 max-pooling, 2x2x2 stride-2 transposed convolutions ("up-conv") keeping the channel count,
  concatenated skips, decoder levels of two convolutions at ``2b, 4b, 8b`` channels.
* ``"nnunet"`` -- nnU-Net style: instance norm (``GroupNormalization(groups=-1)``), LeakyReLU 0.01,
  ``min(b * 2**i, 320)`` channels at level ``i`` (``b = 32`` by default), downsampling by the first
  convolution of each level (stride 2), transposed-convolution upsampling to the skip's width,
  concatenated skips. Deep supervision is not used (one output head).

The stride-1 convolutions are :class:`fedsim_tf.models.conv3d.Conv3D` (Keras' layer with a faster CPU
kernel gradient; same weights and outputs).

Both take channels-last volumes ``[B, Z, Y, X, 1]`` and return **logits** ``[B, Z, Y, X, C]`` (no
activation): ``num_classes=1`` (default) is the binary whole-heart output, foreground probability
``sigmoid(logit)``; ``num_classes >= 2`` (e.g. 8 = background + 7 structures) is read with a softmax
over the last axis.

Spatial sizes must be divisible by ``2**(levels - 1)``. Other sizes are handled by zero-padding at
the end of each axis inside the model and cropping the output back (``pad_to_fit=True``, the
default), or rejected with a ``ValueError`` (``pad_to_fit=False``).
"""

from __future__ import annotations

import keras
from keras import layers

from fedsim_tf.models.conv3d import Conv3D
from fedsim_tf.models.unet_names import UNET_NAMES
NNUNET_MAX_FILTERS = 320


def required_multiple(levels: int) -> int:
    """The factor every spatial size must divide into for a U-Net of ``levels`` levels."""
    return 2 ** (levels - 1)


def _fit_shape(
    spatial_shape: tuple[int, int, int], levels: int, pad_to_fit: bool
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """``(padded_shape, padding)`` per axis; raises ValueError on bad sizes."""
    if len(spatial_shape) != 3 or any(int(s) < 1 for s in spatial_shape):
        raise ValueError(f"spatial_shape must be three positive sizes (Z, Y, X), got {spatial_shape}")
    multiple = required_multiple(levels)
    padding = tuple((-int(s)) % multiple for s in spatial_shape)
    if any(padding) and not pad_to_fit:
        raise ValueError(
            f"input size {tuple(spatial_shape)} is not divisible by {multiple} (= 2**(levels-1) for "
            f"levels={levels}); use sizes like {tuple(int(s) + p for s, p in zip(spatial_shape, padding))} "
            "or pad_to_fit=True"
        )
    padded = tuple(int(s) + p for s, p in zip(spatial_shape, padding))
    return padded, padding  # type: ignore[return-value]


def _conv_block(
    x: keras.KerasTensor, filters: int, strides: int, norm: str, name: str
) -> keras.KerasTensor:
    """3x3x3 convolution -> norm -> activation (``norm``: "batch" + ReLU or "instance" + LeakyReLU 0.01)."""
    x = Conv3D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    if norm == "batch":
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x)
    x = layers.GroupNormalization(groups=-1, epsilon=1e-5, name=f"{name}_in")(x)
    return layers.LeakyReLU(negative_slope=0.01, name=f"{name}_lrelu")(x)


def _cicek_body(x: keras.KerasTensor, base_filters: int, levels: int) -> keras.KerasTensor:
    skips = []
    for level in range(levels - 1):
        width = base_filters * 2**level
        x = _conv_block(x, width, 1, "batch", f"enc{level}a")
        x = _conv_block(x, 2 * width, 1, "batch", f"enc{level}b")
        skips.append(x)
        x = layers.MaxPooling3D(2, name=f"pool{level}")(x)
    bottom = base_filters * 2 ** (levels - 1)
    x = _conv_block(x, bottom, 1, "batch", "bottom_a")
    x = _conv_block(x, 2 * bottom, 1, "batch", "bottom_b")
    for level in reversed(range(levels - 1)):
        x = layers.Conv3DTranspose(x.shape[-1], 2, strides=2, name=f"up{level}")(x)
        x = layers.Concatenate(name=f"skip{level}")([skips[level], x])
        width = base_filters * 2 ** (level + 1)
        x = _conv_block(x, width, 1, "batch", f"dec{level}a")
        x = _conv_block(x, width, 1, "batch", f"dec{level}b")
    return x


def _nnunet_body(x: keras.KerasTensor, base_filters: int, levels: int) -> keras.KerasTensor:
    widths = [min(base_filters * 2**level, NNUNET_MAX_FILTERS) for level in range(levels)]
    skips = []
    for level, width in enumerate(widths):
        x = _conv_block(x, width, 1 if level == 0 else 2, "instance", f"enc{level}a")
        x = _conv_block(x, width, 1, "instance", f"enc{level}b")
        skips.append(x)
    for level in reversed(range(levels - 1)):
        x = layers.Conv3DTranspose(widths[level], 2, strides=2, use_bias=False, name=f"up{level}")(x)
        x = layers.Concatenate(name=f"skip{level}")([skips[level], x])
        x = _conv_block(x, widths[level], 1, "instance", f"dec{level}a")
        x = _conv_block(x, widths[level], 1, "instance", f"dec{level}b")
    return x


def build_unet3d(
    name: str,
    spatial_shape: tuple[int, int, int],
    base_filters: int = 32,
    num_classes: int = 1,
    levels: int | None = None,
    pad_to_fit: bool = True,
) -> keras.Model:
    """Build a 3D U-Net by configuration name.

    Args:
        name: ``"cicek"`` or ``"nnunet"`` (see the module docstring).
        spatial_shape: input size ``(Z, Y, X)`` in voxels.
        base_filters: channels of the first convolution (paper-faithful: 32; 8-16 for CPU demos).
        num_classes: output channels: 1 = binary foreground logit (sigmoid), >= 2 = class logits
            (softmax), e.g. 8 for background + 7 heart structures.
        levels: resolution levels (default: 4 for ``cicek``, 5 for ``nnunet``); sizes must divide
            into ``2**(levels - 1)``.
        pad_to_fit: zero-pad non-divisible inputs at the end of each axis and crop the output back;
            if False such sizes raise ``ValueError``.

    Returns:
        A functional ``keras.Model`` mapping ``[B, Z, Y, X, 1]`` float32 images to
        ``[B, Z, Y, X, num_classes]`` logits (same spatial size as the input).

    Raises:
        ValueError: unknown ``name``, non-positive sizes or counts, or a non-divisible size with
            ``pad_to_fit=False``.
    """
    if name not in UNET_NAMES:
        raise ValueError(f"unknown U-Net configuration {name!r}; expected one of {', '.join(UNET_NAMES)}")
    if levels is None:
        levels = 4 if name == "cicek" else 5
    if levels < 2 or base_filters < 1 or num_classes < 1:
        raise ValueError(
            f"need levels >= 2, base_filters >= 1, num_classes >= 1; got {levels}, {base_filters}, {num_classes}"
        )
    _, padding = _fit_shape(spatial_shape, levels, pad_to_fit)
    inputs = keras.Input(shape=(*(int(s) for s in spatial_shape), 1), name="image")
    x = inputs
    if any(padding):
        x = layers.ZeroPadding3D(tuple((0, p) for p in padding), name="pad_to_fit")(x)
    body = _cicek_body if name == "cicek" else _nnunet_body
    x = body(x, base_filters, levels)
    logits = Conv3D(num_classes, 1, name="logits")(x)
    if any(padding):
        logits = layers.Cropping3D(tuple((0, p) for p in padding), name="crop_back")(logits)
    return keras.Model(inputs, logits, name=f"unet3d_{name}")
