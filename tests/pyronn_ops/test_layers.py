"""Keras layers: same values as the ops, config round trip, use inside a model, bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from pyronn_ops import ConeBackprojection3D, ConeProjection3D, reference_backprojection, reference_projection
from tests.pyronn_ops.cone_cases import relative_max_error, small_geometry

RNG = np.random.default_rng(3)


def test_layers_match_reference_and_round_trip_config():
    g = small_geometry(views=2)
    projector = ConeProjection3D(g, hardware_interp=False, step_size=0.5, grad_mode="adjoint", name="fp")
    backprojector = ConeBackprojection3D(g, name="bp")
    volume = RNG.random((1, *g.volume_shape))
    sinogram = projector(volume).numpy()
    assert relative_max_error(sinogram[0], reference_projection(volume[0], g, False, 0.5)) <= 1e-4
    back = backprojector(sinogram).numpy()
    assert relative_max_error(back[0], reference_backprojection(sinogram[0].astype(np.float64), g)) <= 1e-4

    restored = ConeProjection3D.from_config(projector.get_config())
    assert restored.grad_mode == "adjoint" and restored.step_size == 0.5 and restored.hardware_interp is False
    np.testing.assert_array_equal(restored.geometry.projection_matrices_float64, g.projection_matrices_float64)
    np.testing.assert_array_equal(restored(volume).numpy(), sinogram)
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(backprojector))
    assert isinstance(revived, ConeBackprojection3D)
    np.testing.assert_array_equal(revived(sinogram).numpy(), back)


def test_layers_in_a_model_train_step_gradient():
    g = small_geometry(views=2)
    inputs = keras.Input(shape=g.volume_shape)
    outputs = ConeBackprojection3D(g)(ConeProjection3D(g, grad_mode="adjoint")(inputs))
    model = keras.Model(inputs, outputs)
    assert model.output_shape == (None, *g.volume_shape)
    volume = tf.constant(RNG.random((2, *g.volume_shape)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(volume)
        loss = tf.reduce_sum(model(volume))
    gradient = tape.gradient(loss, volume)
    assert gradient.shape == volume.shape and float(tf.reduce_max(tf.abs(gradient))) > 0


def test_layer_rejects_wrong_input_shape():
    g = small_geometry(views=2)
    with pytest.raises(ValueError, match="volume input shape"):
        ConeProjection3D(g)(np.zeros((1, 10, 12, 15), np.float32))
    with pytest.raises(ValueError, match="geometry must be"):
        ConeBackprojection3D([g])
