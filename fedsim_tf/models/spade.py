"""GauGAN's SPADE generator ``G_GAN`` (Park et al. 2019), the paper's per-site CT enhancement network (Sec. 2.1).

``G_GAN`` turns a conditioning map into one full-resolution CT slice. For slice ``k`` of ``K`` the
conditioning map is channels-last ``[B, H, W, C]``: the trilinearly upsampled coarse CT slice
(``[-1, 1]``), the one-hot label slice (8 channels) and a constant plane ``k / K`` (``C = 10``); the
output is ``[B, H, W, 1]`` on the ``[-1, 1]`` CT scale (tanh).

* :class:`SPADE`: parameter-free instance normalisation of the features, modulated by the
  conditioning map resized (nearest) to the feature size: a shared 3x3 convolution + ReLU
  (``hidden`` channels), then two 3x3 heads ``gamma`` and ``beta``;
  ``out = norm(x) * (1 + gamma) + beta``.
* :class:`SPADEResBlock`: ``SPADE -> LeakyReLU(0.2) -> conv3x3`` twice (hidden width
  ``min(fin, fout)``) plus a shortcut that is the identity when ``fin == fout`` and
  ``SPADE -> conv1x1`` (no bias) otherwise. Spectral normalisation
  (``keras.layers.SpectralNormalization``, one power iteration per training call) wraps the block
  convolutions and the shortcut, not the SPADE-internal convolutions (NVlabs ``spectralspade``).
* :func:`build_spade_generator`: the conditioning map resized (nearest) to
  ``image_size / 2**num_upsamplings`` -> 3x3 conv -> head block -> x2 -> two middle blocks -> then
  ``num_upsamplings - 1`` times (x2 -> block) -> LeakyReLU(0.2) -> 3x3 conv -> tanh; nearest x2
  upsampling. Widths: the head and middle blocks have ``ngf * min(16, 2**(n - 1))`` channels and
  the up block after upsampling ``i`` (``i = 2..n``) ``ngf * min(16, 2**(n - i))``; for ``n = 5``
  this is GauGAN's ``normal`` generator exactly (``16 ngf`` -> ``8, 4, 2, 1 ngf``). Other ``n``
  keep the ladder ending at ``ngf`` (NVlabs' ``more`` instead puts its sixth upsampling between
  the middle blocks).

Kernels start as in NVlabs (Xavier normal, gain 0.02; zero biases), so an untrained SPADE is close
to a plain instance normalisation.

Spectral normalisation in Keras rewrites the wrapped kernel in place when the layer is called with
``training=True`` (PyTorch re-parametrises instead): call a network with ``training=True`` only in
its own update step, and with ``training=False`` whenever its weights must stay untouched.

Speed: the network is GauGAN's, not shrunk or approximated (at ``ngf 64``, 5 upsamplings: 92.3 M
parameters, 69.2 GFLOP per 128^2 slice, about two thirds of it in the SPADE ``gamma``/``beta``
heads). Two exact implementation choices: the nearest resize of the conditioning map is a strided
slice (integer factors only), and :func:`leaky_relu` takes its gradient from its output (identical
values; it keeps TensorFlow's oneDNN remapper from failing on training graphs, see there).
Generation speed comes from batching slices through the oneDNN graph kernels
(:mod:`fedsim_tf.models.slice_synthesis`; figures by ``python -m bench.gan``).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

LEAKY_SLOPE = 0.2
INSTANCE_NORM_EPSILON = 1e-5


def gaugan_initializer() -> keras.initializers.Initializer:
    """NVlabs' ``init_type=xavier, init_variance=0.02``: Xavier (Glorot) normal with gain 0.02."""
    return keras.initializers.VarianceScaling(0.02**2, mode="fan_avg", distribution="untruncated_normal")


def instance_norm(epsilon: float = INSTANCE_NORM_EPSILON, name: str | None = None) -> keras.layers.Layer:
    """Parameter-free instance normalisation over ``H, W`` per sample and channel of ``[B, H, W, C]``."""
    return keras.layers.GroupNormalization(groups=-1, center=False, scale=False, epsilon=epsilon, name=name)


@tf.custom_gradient
def leaky_relu(features: tf.Tensor) -> tuple[tf.Tensor, object]:
    """``LeakyReLU(0.2)`` whose gradient is computed from its output (the same values as ``tf.nn.leaky_relu``).

    With the built-in gradient (``LeakyReluGrad`` reads the pre-activation) TensorFlow's oneDNN graph
    remapper fuses ``conv + bias (+ add) + LeakyRelu`` in training graphs, then fails on the gradient
    that still needs the fused-away pre-activation and logs ``remapper failed``; the slope is
    positive, so the sign of the output is that of the input and the output suffices.
    """
    activations = tf.nn.leaky_relu(features, LEAKY_SLOPE)

    def gradient(upstream: tf.Tensor) -> tf.Tensor:
        return upstream * tf.where(activations > 0, 1.0, LEAKY_SLOPE)

    return activations, gradient


@keras.saving.register_keras_serializable(package="fedsim_tf")
class LeakyReLU(keras.layers.Layer):
    """Layer form of :func:`leaky_relu` (slope 0.2)."""

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return leaky_relu(inputs)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape


def nearest_downsample(condition: tf.Tensor, size: Sequence[int]) -> tf.Tensor:
    """Nearest-neighbour resize of ``[B, H, W, C]`` to ``[B, h, w, C]`` for integer factors ``H/h, W/w``.

    Output pixel ``i`` takes input pixel ``i * f + f // 2`` (the input pixel whose centre is nearest to
    the output pixel's centre, as ``tf.image.resize(method="nearest")``), as a strided slice.

    Raises:
        ValueError: a size that does not divide the conditioning map's size.
    """
    height, width = int(condition.shape[1]), int(condition.shape[2])
    target_h, target_w = int(size[0]), int(size[1])
    if height % target_h or width % target_w:
        raise ValueError(f"conditioning map {height}x{width} cannot be resized by an integer factor to {target_h}x{target_w}")
    step_h, step_w = height // target_h, width // target_w
    return condition[:, step_h // 2 :: step_h, step_w // 2 :: step_w, :]


@keras.saving.register_keras_serializable(package="fedsim_tf")
class NearestDownsample(keras.layers.Layer):
    """Layer form of :func:`nearest_downsample` by integer ``factor`` on both spatial axes of ``[B, H, W, C]``."""

    def __init__(self, factor: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return nearest_downsample(inputs, (inputs.shape[1] // self.factor, inputs.shape[2] // self.factor))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], input_shape[1] // self.factor, input_shape[2] // self.factor, input_shape[3])

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="fedsim_tf")
class SPADE(keras.layers.Layer):
    """Spatially-adaptive normalisation.

    Called on ``[features, condition]``: features ``[B, h, w, F]``, conditioning map
    ``[B, H, W, C]`` whose size is an integer multiple of ``h, w``. Returns ``[B, h, w, F]``
    ``= instance_norm(features) * (1 + gamma) + beta`` with ``gamma, beta [B, h, w, F]`` computed
    from the conditioning map resized (nearest) to ``h x w``.

    Args:
        hidden: channels of the shared convolution (GauGAN: 128).
        kernel_size: size of the shared and head convolutions (GauGAN: 3).
        epsilon: variance epsilon of the instance normalisation.
    """

    def __init__(
        self, hidden: int = 128, kernel_size: int = 3, epsilon: float = INSTANCE_NORM_EPSILON, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)
        self.hidden = int(hidden)
        self.kernel_size = int(kernel_size)
        self.epsilon = float(epsilon)

    def build(self, input_shape: Sequence[tuple]) -> None:
        feature_shape, condition_shape = input_shape
        channels = int(feature_shape[-1])
        small_condition = (condition_shape[0], feature_shape[1], feature_shape[2], condition_shape[-1])
        self.norm = instance_norm(self.epsilon, name="norm")
        self.shared = keras.layers.Conv2D(
            self.hidden, self.kernel_size, padding="same", activation="relu",
            kernel_initializer=gaugan_initializer(), name="shared",
        )
        self.gamma = keras.layers.Conv2D(
            channels, self.kernel_size, padding="same", kernel_initializer=gaugan_initializer(), name="gamma"
        )
        self.beta = keras.layers.Conv2D(
            channels, self.kernel_size, padding="same", kernel_initializer=gaugan_initializer(), name="beta"
        )
        self.norm.build(feature_shape)
        self.shared.build(small_condition)
        hidden_shape = (*small_condition[:3], self.hidden)
        self.gamma.build(hidden_shape)
        self.beta.build(hidden_shape)

    def call(self, inputs: Sequence[tf.Tensor]) -> tf.Tensor:
        features, condition = inputs
        hidden = self.shared(nearest_downsample(condition, features.shape[1:3]))
        return self.norm(features) * (1.0 + self.gamma(hidden)) + self.beta(hidden)

    def compute_output_shape(self, input_shape: Sequence[tuple]) -> tuple:
        return tuple(input_shape[0])

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "hidden": self.hidden, "kernel_size": self.kernel_size, "epsilon": self.epsilon}


def _block_conv(filters: int, kernel_size: int, use_bias: bool, spectral: bool, name: str) -> keras.layers.Layer:
    conv = keras.layers.Conv2D(
        filters, kernel_size, padding="same", use_bias=use_bias, kernel_initializer=gaugan_initializer(), name=name
    )
    return keras.layers.SpectralNormalization(conv, name=f"{name}_sn") if spectral else conv


@keras.saving.register_keras_serializable(package="fedsim_tf")
class SPADEResBlock(keras.layers.Layer):
    """GauGAN's SPADE residual block.

    Called on ``[features [B, h, w, fin], condition [B, H, W, C]]``; returns ``[B, h, w, fout]``.

    Args:
        filters: ``fout``, output channels.
        hidden: channels of the SPADE shared convolutions.
        spectral: wrap the block convolutions and the shortcut in spectral normalisation.
    """

    def __init__(self, filters: int, hidden: int = 128, spectral: bool = True, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.hidden = int(hidden)
        self.spectral = bool(spectral)

    def build(self, input_shape: Sequence[tuple]) -> None:
        feature_shape, condition_shape = input_shape
        fin = int(feature_shape[-1])
        middle = min(fin, self.filters)
        self.learned_shortcut = fin != self.filters
        self.spade_0 = SPADE(self.hidden, name="spade_0")
        self.conv_0 = _block_conv(middle, 3, True, self.spectral, "conv_0")
        self.spade_1 = SPADE(self.hidden, name="spade_1")
        self.conv_1 = _block_conv(self.filters, 3, True, self.spectral, "conv_1")
        self.spade_0.build([feature_shape, condition_shape])
        self.conv_0.build(feature_shape)
        middle_shape = (*feature_shape[:3], middle)
        self.spade_1.build([middle_shape, condition_shape])
        self.conv_1.build(middle_shape)
        if self.learned_shortcut:
            self.spade_shortcut = SPADE(self.hidden, name="spade_shortcut")
            self.conv_shortcut = _block_conv(self.filters, 1, False, self.spectral, "conv_shortcut")
            self.spade_shortcut.build([feature_shape, condition_shape])
            self.conv_shortcut.build(feature_shape)

    def call(self, inputs: Sequence[tf.Tensor], training: bool = False) -> tf.Tensor:
        features, condition = inputs
        hidden = self.conv_0(leaky_relu(self.spade_0([features, condition])), training=training)
        residual = self.conv_1(leaky_relu(self.spade_1([hidden, condition])), training=training)
        if self.learned_shortcut:
            features = self.conv_shortcut(self.spade_shortcut([features, condition]), training=training)
        return features + residual

    def compute_output_shape(self, input_shape: Sequence[tuple]) -> tuple:
        return (*tuple(input_shape[0])[:3], self.filters)

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "filters": self.filters, "hidden": self.hidden, "spectral": self.spectral}


def generator_widths(ngf: int, num_upsamplings: int) -> tuple[int, ...]:
    """Channel plan ``(head/middle width, up-block widths...)`` of :func:`build_spade_generator`."""
    top = ngf * min(16, 2 ** (num_upsamplings - 1))
    return (top, *(ngf * min(16, 2 ** (num_upsamplings - i)) for i in range(2, num_upsamplings + 1)))


def image_shape(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``(H, W)`` of an edge ``H = W`` or of an ``(H, W)`` pair."""
    if isinstance(image_size, int):
        return (image_size, image_size)
    height, width = (int(s) for s in image_size)
    return (height, width)


def build_spade_generator(
    image_size: int | Sequence[int],
    condition_channels: int = 10,
    ngf: int = 64,
    num_upsamplings: int = 5,
    spade_hidden: int = 128,
    name: str = "spade_generator",
) -> keras.Model:
    """GauGAN generator without the VAE encoder (see the module docstring).

    Args:
        image_size: output edge ``H = W`` (or ``(H, W)``) in pixels, divisible by ``2**num_upsamplings``.
        condition_channels: ``C``, channels of the conditioning map.
        ngf: base width (GauGAN: 64).
        num_upsamplings: number of x2 upsamplings (GauGAN ``normal``: 5).
        spade_hidden: channels of the SPADE shared convolutions (GauGAN: 128).
        name: model name.

    Returns:
        A functional model ``condition [B, H, W, C] -> CT slice [B, H, W, 1]`` in ``[-1, 1]``.

    Raises:
        ValueError: non-positive sizes or widths, or an image size not divisible by ``2**num_upsamplings``.
    """
    height, width = image_shape(image_size)
    if min(height, width, condition_channels, ngf, num_upsamplings, spade_hidden) < 1:
        raise ValueError(
            f"image_size, condition_channels, ngf, num_upsamplings and spade_hidden must be >= 1; got "
            f"{(height, width)}, {condition_channels}, {ngf}, {num_upsamplings}, {spade_hidden}"
        )
    factor = 2**num_upsamplings
    if height % factor or width % factor:
        raise ValueError(
            f"image_size {height}x{width} is not divisible by 2**num_upsamplings = {factor}; "
            f"use fewer upsamplings or a multiple of {factor}"
        )
    widths = generator_widths(ngf, num_upsamplings)
    condition = keras.Input((height, width, condition_channels), name="condition")
    x = NearestDownsample(factor, name="condition_resize")(condition)
    x = keras.layers.Conv2D(widths[0], 3, padding="same", kernel_initializer=gaugan_initializer(), name="condition_conv")(x)
    x = SPADEResBlock(widths[0], spade_hidden, name="head")([x, condition])
    x = keras.layers.UpSampling2D(2, interpolation="nearest", name="upsample_0")(x)
    x = SPADEResBlock(widths[0], spade_hidden, name="middle_0")([x, condition])
    x = SPADEResBlock(widths[0], spade_hidden, name="middle_1")([x, condition])
    for index, filters in enumerate(widths[1:]):
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"upsample_{index + 1}")(x)
        x = SPADEResBlock(filters, spade_hidden, name=f"up_{index}")([x, condition])
    x = LeakyReLU(name="output_lrelu")(x)
    x = keras.layers.Conv2D(1, 3, padding="same", kernel_initializer=gaugan_initializer(), name="to_image")(x)
    image = keras.layers.Activation("tanh", name="ct_slice")(x)
    return keras.Model(condition, image, name=name)
