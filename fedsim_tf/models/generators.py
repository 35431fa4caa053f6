"""The shape and material generators of the paper (Sec. 2.1): ``G_S: z -> tau_S``, ``G_M: z -> tau_M``.

* ``G_S`` maps a latent ``z`` ``[B, D]`` to ``[B, n_modes + 7]`` bounded shape parameters in the
  layout of :mod:`fedsim_tf.shape.parameters`: SSM weights in std units, a rotation vector
  (radians), a translation (mm) and a log-scale, each within its range ``centre +- half-width``
  (:class:`~fedsim_tf.shape.parameters.ShapeBounds`). Bounding is ``centre + half * tanh(raw)``,
  smooth and saturating, so no sample can leave the plausible SSM region.
* ``G_M`` maps ``z`` to a non-negative coarse attenuation map ``[B, c, c, c]`` (``[z, y, x]``) in
  **mu per cm** at the simulator's effective energy: ``mu = mu_water * softplus(raw) / log(2)``, so a
  zero pre-activation is water and the map can never be negative.

Both are small decoders: an MLP for ``G_S``; dense -> ``[c/4]^3`` features -> two 3D transposed
convolutions (x2 each) -> a 1-channel 3D convolution for ``G_M``.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from fedsim_tf.models.generative_model import GenerativeModel
from fedsim_tf.physics.materials import water_mu
from fedsim_tf.shape.parameters import ShapeBounds, num_shape_params


class BoundedParameters(keras.layers.Layer):
    """``centres + limits * tanh(x)``: maps ``[B, P]`` unbounded values into ``(centres - limits, centres + limits)``.

    Args:
        limits: ``(P,)`` positive half-widths, in the units of each parameter.
        centres: ``(P,)`` range centres (default 0).
    """

    def __init__(
        self, limits: list[float] | np.ndarray, centres: list[float] | np.ndarray | None = None, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)
        self.limits = [float(v) for v in np.asarray(limits).reshape(-1)]
        self.centres = [0.0] * len(self.limits) if centres is None else [float(v) for v in np.asarray(centres).reshape(-1)]
        if len(self.centres) != len(self.limits):
            raise ValueError(f"BoundedParameters: {len(self.limits)} limits but {len(self.centres)} centres")

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        limits = tf.constant(self.limits, dtype=inputs.dtype)
        return tf.constant(self.centres, dtype=inputs.dtype) + tf.tanh(inputs) * limits

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "limits": self.limits, "centres": self.centres}


class Attenuation(keras.layers.Layer):
    """``mu_water * softplus(x) / log(2)``: non-negative attenuation (/cm), water at ``x = 0``.

    Args:
        water_mu_per_cm: attenuation of water (/cm) at the simulator's effective energy.
    """

    def __init__(self, water_mu_per_cm: float, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.water_mu_per_cm = float(water_mu_per_cm)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.nn.softplus(inputs) * (self.water_mu_per_cm / math.log(2.0))

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "water_mu_per_cm": self.water_mu_per_cm}


def build_shape_generator(
    latent_dim: int, n_modes: int, bounds: ShapeBounds, hidden: int = 128, name: str = "shape_generator"
) -> keras.Model:
    """``G_S``: ``z [B, latent_dim] -> tau_S [B, n_modes + 7]`` bounded shape parameters.

    The last dense layer starts with small weights and zero bias, so an untrained generator
    outputs shapes close to the centres of the ranges (the SSM mean at the centre pose).
    """
    z = keras.Input((latent_dim,), name="z")
    x = keras.layers.Dense(hidden, activation="relu", name="hidden_1")(z)
    x = keras.layers.Dense(hidden, activation="relu", name="hidden_2")(x)
    x = keras.layers.Dense(
        num_shape_params(n_modes),
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        name="raw_params",
    )(x)
    bounded = BoundedParameters(bounds.half_widths(n_modes), bounds.centres(n_modes), name="bounded")
    return keras.Model(z, bounded(x), name=name)


def build_material_generator(
    latent_dim: int, coarse_size: int, water_mu_per_cm: float, width: int = 32, name: str = "material_generator"
) -> keras.Model:
    """``G_M``: ``z [B, latent_dim] -> tau_M [B, c, c, c]`` attenuation (/cm), ``[z, y, x]``.

    Args:
        latent_dim: size of ``z``.
        coarse_size: ``c``, the material grid edge; a multiple of 4.
        water_mu_per_cm: water attenuation (/cm) that a zero pre-activation maps to.
        width: channels of the first feature grid (halved by each upsampling).
    """
    if coarse_size % 4 or coarse_size < 4:
        raise ValueError(f"coarse_size must be a positive multiple of 4, got {coarse_size}")
    start = coarse_size // 4
    z = keras.Input((latent_dim,), name="z")
    x = keras.layers.Dense(start**3 * width, activation="relu", name="project")(z)
    x = keras.layers.Reshape((start, start, start, width))(x)
    for level, channels in enumerate((width // 2, width // 4)):
        x = keras.layers.Conv3DTranspose(
            max(channels, 4), 4, strides=2, padding="same", activation="relu", name=f"up_{level}"
        )(x)
    x = keras.layers.Conv3D(1, 3, padding="same", kernel_initializer="zeros", name="to_material")(x)
    x = keras.layers.Reshape((coarse_size, coarse_size, coarse_size))(x)
    return keras.Model(z, Attenuation(water_mu_per_cm, name="attenuation")(x), name=name)


def build_generators(model: GenerativeModel, seed: int) -> tuple[keras.Model, keras.Model]:
    """``(G_S, G_M)`` of a recorded generative model, weights initialised from ``seed``."""
    keras.utils.set_random_seed(seed)
    shape_generator = build_shape_generator(model.latent_dim, model.n_modes, model.bounds)
    material_generator = build_material_generator(model.latent_dim, model.coarse_size, water_mu(model.scanner.kev))
    return shape_generator, material_generator
