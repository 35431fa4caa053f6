"""G_S / G_M: output shapes, parameter bounds, non-negative attenuation, Keras config round trip."""

import math

import numpy as np
import pytest

from fedsim_tf.shape.parameters import ShapeBounds
from fedsim_tf.models.generators import (
    Attenuation,
    BoundedParameters,
    build_material_generator,
    build_shape_generator,
)

WATER = 0.1929


def test_shape_generator_outputs_stay_within_the_flag_ranges():
    bounds = ShapeBounds(mode_limit=3.0, rotation_rad=math.radians(10.0), translation_mm=5.0, log_scale=0.1)
    model = build_shape_generator(latent_dim=6, n_modes=14, bounds=bounds, hidden=16)
    # Push the pre-activations far out so that tanh saturates: outputs must still be inside.
    raw = model.get_layer("raw_params")
    raw.kernel.assign(np.full(raw.kernel.shape, 50.0, dtype=np.float32))
    z = np.random.default_rng(0).normal(size=(8, 6)).astype(np.float32)
    out = model(z).numpy()
    assert out.shape == (8, 21)
    limits = np.array([3.0] * 14 + [math.radians(10.0)] * 3 + [5.0] * 3 + [0.1])
    assert np.all(np.abs(out) <= limits + 1e-6)
    # Saturated outputs reach the bounds (so the whole range is usable).
    assert np.allclose(np.abs(out).max(axis=0), limits, rtol=1e-3)


def test_bounded_parameters_is_limits_times_tanh():
    layer = BoundedParameters([2.0, 0.5])
    x = np.array([[0.3, -1.2]], dtype=np.float32)
    assert np.allclose(layer(x).numpy(), [[2.0 * np.tanh(0.3), 0.5 * np.tanh(-1.2)]], atol=1e-6)
    assert BoundedParameters.from_config(layer.get_config()).limits == [2.0, 0.5]
    shifted = BoundedParameters([2.0, 0.5], centres=[1.0, -0.25])
    assert np.allclose(shifted(x).numpy(), [[1.0 + 2.0 * np.tanh(0.3), -0.25 + 0.5 * np.tanh(-1.2)]], atol=1e-6)
    assert BoundedParameters.from_config(shifted.get_config()).centres == [1.0, -0.25]


def test_shape_bounds_centres_shift_the_translation_and_scale_ranges():
    bounds = ShapeBounds(translation_mm=5.0, log_scale=0.1, translation_centre_mm=(1.0, -2.0, 3.0),
                         log_scale_centre=0.25)
    model = build_shape_generator(latent_dim=3, n_modes=2, bounds=bounds, hidden=8)
    raw = model.get_layer("raw_params")
    for sign in (1.0, -1.0):  # saturate tanh at +1, then at -1
        raw.kernel.assign(np.zeros(raw.kernel.shape, np.float32))
        raw.bias.assign(np.full(raw.bias.shape, 50.0 * sign, np.float32))
        out = model(np.zeros((1, 3), np.float32)).numpy()[0]
        # Layout: 2 modes, rotation (3), translation (3), log-scale (1).
        assert np.allclose(out[5:8], np.array([1.0, -2.0, 3.0]) + sign * 5.0, atol=1e-4)
        assert out[8] == pytest.approx(0.25 + sign * 0.1, abs=1e-5)


def test_untrained_shape_generator_starts_near_the_mean_shape():
    model = build_shape_generator(latent_dim=4, n_modes=14, bounds=ShapeBounds())
    out = model(np.random.default_rng(1).normal(size=(4, 4)).astype(np.float32)).numpy()
    assert np.abs(out[:, :14]).max() < 0.5


def test_material_generator_shape_and_non_negative_units():
    model = build_material_generator(latent_dim=5, coarse_size=16, water_mu_per_cm=WATER, width=8)
    out = model(np.random.default_rng(2).normal(size=(3, 5)).astype(np.float32)).numpy()
    assert out.shape == (3, 16, 16, 16)
    # Zero-initialised last convolution: the untrained map is water everywhere.
    assert np.allclose(out, WATER, rtol=1e-5)
    last = model.get_layer("to_material")
    last.bias.assign(np.array([-40.0], dtype=np.float32))
    assert model(np.zeros((1, 5), np.float32)).numpy().min() >= 0.0


def test_attenuation_is_scaled_softplus():
    layer = Attenuation(WATER)
    x = np.array([-2.0, 0.0, 3.0], dtype=np.float32)
    expected = WATER * np.log1p(np.exp(x)) / np.log(2.0)
    assert np.allclose(layer(x).numpy(), expected, rtol=1e-6)
    assert Attenuation.from_config(layer.get_config()).water_mu_per_cm == pytest.approx(WATER)


def test_material_generator_rejects_sizes_not_multiple_of_four():
    with pytest.raises(ValueError, match="multiple of 4"):
        build_material_generator(latent_dim=4, coarse_size=10, water_mu_per_cm=WATER)


def test_shape_bounds_reject_non_positive_ranges():
    with pytest.raises(ValueError, match="translation_mm"):
        ShapeBounds(translation_mm=0.0)
