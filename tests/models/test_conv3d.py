"""The U-Net's 3-D convolution: its kernel gradient against TensorFlow's own float64 gradient
(``Conv3DBackpropFilterV2``, an independent kernel), and the layer against ``keras.layers.Conv3D``."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from fedsim_tf.models.conv3d import Conv3D, conv3d_same, kernel_gradient
from fedsim_tf.models.unet3d import build_unet3d


def _reference_gradients(x: np.ndarray, w: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d<y, g>/dx and d<y, g>/dw of y = conv3d(x, w, SAME), in float64 by TensorFlow's own kernels."""
    x64, w64 = tf.constant(x, tf.float64), tf.constant(w, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch([x64, w64])
        loss = tf.reduce_sum(tf.nn.conv3d(x64, w64, [1] * 5, "SAME") * tf.constant(g, tf.float64))
    dx, dw = tape.gradient(loss, [x64, w64])
    return dx.numpy(), dw.numpy()


@pytest.mark.parametrize("kernel", [(3, 3, 3), (1, 1, 1), (3, 1, 5)])
def test_kernel_and_input_gradients_match_tensorflows_float64_gradients(kernel: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 6, 7, 2))
    w = rng.normal(size=(*kernel, 2, 3))
    g = rng.normal(size=(2, 5, 6, 7, 3))
    dx_ref, dw_ref = _reference_gradients(x, w, g)
    dw = kernel_gradient(tf.constant(x, tf.float32), tf.constant(g, tf.float32), kernel).numpy()
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-4, atol=1e-4)
    xt, wt = tf.constant(x, tf.float32), tf.constant(w, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch([xt, wt])
        loss = tf.reduce_sum(conv3d_same(xt, wt) * tf.constant(g, tf.float32))
    dx, dw_layer = tape.gradient(loss, [xt, wt])
    np.testing.assert_allclose(dx.numpy(), dx_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw_layer.numpy(), dw_ref, rtol=1e-4, atol=1e-4)


def test_a_single_tap_gradient_is_the_hand_computed_correlation() -> None:
    # 1x1x1 kernel, one input and one output channel: dL/dw = sum over voxels of x * g
    x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2, 1)
    g = np.ones((1, 2, 2, 2, 1), np.float32) * 0.5
    assert kernel_gradient(tf.constant(x), tf.constant(g), (1, 1, 1)).numpy().item() == pytest.approx(14.0)


def test_even_kernels_are_refused() -> None:
    with pytest.raises(ValueError, match="odd kernel sizes only"):
        kernel_gradient(tf.zeros((1, 4, 4, 4, 1)), tf.zeros((1, 4, 4, 4, 1)), (2, 3, 3))


@pytest.mark.parametrize("arguments", [dict(kernel_size=3, padding="same"), dict(kernel_size=3, strides=2,
                                       padding="same"), dict(kernel_size=3, padding="valid")])
def test_layer_matches_keras_conv3d_outputs_and_gradients(arguments: dict) -> None:
    keras.utils.set_random_seed(0)
    ours, theirs = Conv3D(4, **arguments), keras.layers.Conv3D(4, **arguments)
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 6, 6, 6, 3)), tf.float32)
    ours.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights([w + 0.1 for w in ours.get_weights()])
    ours.set_weights(theirs.get_weights())
    results = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * y)
        results.append([y, *tape.gradient(loss, [x, *layer.trainable_variables])])
    for mine, keras_value in zip(*results):
        np.testing.assert_allclose(mine.numpy(), keras_value.numpy(), rtol=1e-4, atol=1e-4)


def test_unet_uses_the_layer_and_its_config_round_trips() -> None:
    model = build_unet3d("nnunet", (16, 16, 16), 2)
    convs = [layer for layer in model.layers if isinstance(layer, Conv3D)]
    assert convs and all(type(layer) is Conv3D for layer in convs)
    clone = keras.Model.from_config(model.get_config())
    assert [type(layer).__name__ for layer in clone.layers] == [type(layer).__name__ for layer in model.layers]
