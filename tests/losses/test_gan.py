"""GauGAN losses against hand-computed values and a NumPy reference of the 2-D VGG loss."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from fedsim_tf.losses.gan import (
    feature_matching_loss,
    hinge_fake_loss,
    hinge_generator_loss,
    hinge_real_loss,
    vgg_loss,
)
from fedsim_tf.losses.generation import PerceptualLoss


def _outputs(logits_0: list, logits_1: list) -> list:
    """Two scales whose only map is the logits."""
    return [[tf.constant(logits_0, tf.float32)], [tf.constant(logits_1, tf.float32)]]


def test_hinge_losses_hand_computed():
    outputs = _outputs([[0.5, -2.0], [1.5, 0.0]], [[3.0, -0.5]])
    # real: relu(1 - x) -> scale 0 [0.5, 3, 0, 1] mean 1.125; scale 1 [0, 1.5] mean 0.75 -> (1.125 + 0.75) / 2
    assert np.isclose(hinge_real_loss(outputs).numpy(), 0.9375, atol=1e-7)
    # fake: relu(1 + x) -> scale 0 [1.5, 0, 2.5, 1] mean 1.25; scale 1 [4, 0.5] mean 2.25 -> 1.75
    assert np.isclose(hinge_fake_loss(outputs).numpy(), 1.75, atol=1e-7)
    # generator: -mean(x) -> scale 0 -0.0, scale 1 -1.25 -> -0.625
    assert np.isclose(hinge_generator_loss(outputs).numpy(), -0.625, atol=1e-7)


def test_hinge_losses_use_only_the_last_map_of_each_scale():
    ignored = tf.constant([[100.0, -100.0]])
    outputs = [[ignored, tf.constant([[2.0, -3.0]])]]
    assert np.isclose(hinge_real_loss(outputs).numpy(), (0.0 + 4.0) / 2, atol=1e-7)
    assert np.isclose(hinge_fake_loss(outputs).numpy(), (3.0 + 0.0) / 2, atol=1e-7)


def test_feature_matching_hand_computed_and_no_gradient_to_the_real_features():
    fake = [
        [tf.constant([[1.0, 2.0], [3.0, 4.0]]), tf.constant([0.0, 0.0, 0.0]), tf.constant([9.0])],
        [tf.constant([[-1.0]]), tf.constant([7.0])],
    ]
    real = [
        [tf.constant([[1.5, 2.0], [1.0, 4.0]]), tf.constant([1.0, -2.0, 3.0]), tf.constant([-9.0])],
        [tf.constant([[2.0]]), tf.constant([-7.0])],
    ]
    # scale 0: mean|[-0.5, 0, 2, 0]| = 0.625, mean|[-1, 2, -3]| = 2; scale 1: |-3| = 3; logits ignored.
    # total (0.625 + 2 + 3) * 10 / 2 = 28.125
    assert np.isclose(feature_matching_loss(fake, real, weight=10.0).numpy(), 28.125, atol=1e-6)
    assert np.isclose(feature_matching_loss(fake, real, weight=4.0).numpy(), 11.25, atol=1e-6)
    real_map = tf.Variable([[1.5, 2.0], [1.0, 4.0]])
    fake_map = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
    with tf.GradientTape() as tape:
        loss = feature_matching_loss([[fake_map, tf.constant([0.0])]], [[real_map, tf.constant([0.0])]], 1.0)
    grad_fake, grad_real = tape.gradient(loss, [fake_map, real_map])
    # d/dfake mean|fake - real| = sign(fake - real) / 4 (0 where equal)
    assert np.allclose(grad_fake.numpy(), [[-0.25, 0.0], [0.25, 0.0]])
    assert grad_real is None


def test_feature_matching_rejects_mismatched_scales():
    with pytest.raises(ValueError, match="2 fake scales but 1 real scales"):
        feature_matching_loss(_outputs([0.0], [0.0]), [[tf.constant([0.0])]])


def _two_map_features() -> keras.Model:
    """A stand-in for VGG: a 1x1 convolution map, then a pooled 3x3 convolution map."""
    inputs = keras.Input((8, 8, 3))
    pointwise = keras.layers.Conv2D(3, 1, activation="relu")(inputs)
    pooled = keras.layers.AveragePooling2D(2)(pointwise)
    return keras.Model(inputs, [pointwise, keras.layers.Conv2D(2, 3, activation="tanh")(pooled)])


def test_vgg_loss_on_slices_matches_a_numpy_reference():
    keras.utils.set_random_seed(5)
    features = _two_map_features()
    perceptual = PerceptualLoss(features, layer_weights=(0.5, 2.0), image_size=8)
    rng = np.random.default_rng(0)
    fake = rng.uniform(-1, 1, (3, 4, 4, 1)).astype(np.float32)
    real = rng.uniform(-1, 1, (3, 4, 4, 1)).astype(np.float32)

    def images(slices: np.ndarray) -> np.ndarray:
        # bilinear 4 -> 8 resize (half-pixel centres, edge clamped) done by hand along each axis
        source = np.clip((np.arange(8) + 0.5) / 2 - 0.5, 0, 3)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, 3)
        frac = source - low
        rows = slices[:, low] * (1 - frac)[None, :, None, None] + slices[:, high] * frac[None, :, None, None]
        both = rows[:, :, low] * (1 - frac)[None, None, :, None] + rows[:, :, high] * frac[None, None, :, None]
        grey = (both + 1.0) * 127.5
        return np.concatenate([grey - 103.939, grey - 116.779, grey - 123.68], axis=-1)

    per_slice = np.zeros(3)
    for weight, a, b in zip((0.5, 2.0), features(images(fake)), features(images(real))):
        per_slice += weight * np.abs(a.numpy() - b.numpy()).reshape(3, -1).mean(axis=1)
    assert np.allclose(perceptual.slice_losses(fake, real).numpy(), per_slice, rtol=1e-4, atol=1e-5)
    assert np.isclose(vgg_loss(perceptual, fake, real, weight=10.0).numpy(), 10.0 * per_slice.mean(), rtol=1e-4)
    assert np.isclose(vgg_loss(perceptual, real, real).numpy(), 0.0, atol=1e-6)
