"""IoU and perceptual losses against hand-computed values and NumPy references."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from fedsim_tf.errors import UserInputError
from fedsim_tf.losses.generation import PerceptualLoss, iou_loss, perceptual_backbone


def test_iou_loss_hand_computed():
    pred = np.zeros((2, 2, 2, 4), np.float32)
    target = np.zeros((2, 2, 2, 4), np.float32)
    # Volume 0: pred 4 voxels, target 6 voxels, overlap 3 -> IoU 3 / 7.
    pred[0].flat[[0, 1, 2, 3]] = 1
    target[0].flat[[1, 2, 3, 4, 5, 6]] = 1
    # Volume 1: identical masks of 5 voxels -> IoU 1.
    pred[1].flat[[7, 8, 9, 10, 11]] = 1
    target[1].flat[[7, 8, 9, 10, 11]] = 1
    assert np.allclose(iou_loss(pred, target).numpy(), [1 - 3 / 7, 0.0], atol=1e-7)


def test_iou_loss_soft_values_and_empty_masks():
    pred = np.array([[[[0.5, 1.0, 0.0]]], [[[0.0, 0.0, 0.0]]]], np.float32)
    target = np.array([[[[1.0, 1.0, 1.0]]], [[[0.0, 0.0, 0.0]]]], np.float32)
    # soft: I = 1.5, U = 1.5 + 3 - 1.5 = 3 -> loss 0.5; two empty masks -> 0.
    assert np.allclose(iou_loss(pred, target).numpy(), [0.5, 0.0], atol=1e-7)


def test_iou_loss_gradient_matches_the_analytic_derivative():
    pred = tf.Variable([[[[0.2, 0.7, 0.0, 1.0]]]])
    target = np.array([[[[1.0, 0.0, 1.0, 1.0]]]], np.float32)
    with tf.GradientTape() as tape:
        loss = iou_loss(pred, target)[0]
    grad = tape.gradient(loss, pred).numpy().ravel()
    p, t = pred.numpy().ravel(), target.ravel()
    inter, union = np.sum(p * t), np.sum(p) + np.sum(t) - np.sum(p * t)
    expected = -(t * union - inter * (1 - t)) / union**2
    assert np.allclose(grad, expected, atol=1e-6)


def _tiny_features() -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    first = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="c1")(inputs)
    second = keras.layers.Conv2D(3, 3, strides=2, padding="same", activation="relu", name="c2")(first)
    return keras.Model(inputs, [first, second])


def test_perceptual_loss_matches_a_numpy_reference():
    keras.utils.set_random_seed(3)
    features = _tiny_features()
    loss = PerceptualLoss(features, layer_weights=(0.5, 2.0), image_size=8, slices=2)
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (2, 4, 8, 8)).astype(np.float32)
    b = rng.uniform(-1, 1, (2, 4, 8, 8)).astype(np.float32)
    got = loss(a, b).numpy()
    # Reference: two evenly spaced slices of 4 -> z = 0.5 and 2.5 rounded (banker's) to 0 and 2;
    # the images are already 8 x 8, so the bilinear resize is the identity.
    picks = [0, 2]

    def images(v):
        grey = (v[:, picks].reshape(-1, 8, 8, 1) + 1.0) * 127.5
        return np.concatenate([grey - 103.939, grey - 116.779, grey - 123.68], axis=-1)

    fa, fb = features(images(a)), features(images(b))
    expected = np.zeros(2)
    for w, x, y in zip((0.5, 2.0), fa, fb):
        d = np.abs(x.numpy() - y.numpy()).reshape(2, -1)
        expected += w * d.mean(axis=1)
    assert got.shape == (2,)
    assert np.allclose(got, expected, rtol=1e-5)
    assert np.allclose(loss(a, a).numpy(), 0.0, atol=1e-5)


def test_perceptual_backbone_choices(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert perceptual_backbone("none", 32).model is None
    auto = perceptual_backbone("auto", 32)
    assert auto.model is None and "off" in auto.description
    with pytest.raises(UserInputError, match="no such weights file"):
        perceptual_backbone(str(tmp_path / "missing.h5"), 32)
