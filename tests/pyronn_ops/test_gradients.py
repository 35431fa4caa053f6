"""Gradients: exact adjoints (dot-product test, float64 reference transposes, numerical Jacobian)
and PYRO-NN's registered gradients."""

import numpy as np
import pytest
import tensorflow as tf

from pyronn_ops import (
    GeometryCone3D,
    circular_trajectory_3d,
    cone_backprojection3d,
    cone_projection3d,
    reference_backprojection_adjoint,
    reference_projection_adjoint,
)
from tests.pyronn_ops.cone_cases import relative_max_error, small_geometry

RNG = np.random.default_rng(5)


def vjp(operator, x, upstream):
    """``(operator(x), d<operator(x), upstream>/dx)`` via the tape."""
    x = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = operator(x)
    return y.numpy().astype(np.float64), tape.gradient(y, x, output_gradients=tf.constant(upstream, tf.float32)).numpy()


def dot_product_gap(forward, y, x, back):
    """``|<Ax, y> - <x, A^T y>| / (||Ax|| ||y||)`` in float64."""
    forward, y, x, back = (np.asarray(a, np.float64) for a in (forward, y, x, back))
    return abs(np.sum(forward * y) - np.sum(x * back)) / (np.linalg.norm(forward) * np.linalg.norm(y))


@pytest.mark.parametrize("end_correction_rule, hardware_interp, step_size", [(False, True, 1.0), (True, False, 0.6)])
def test_projection_adjoint_dot_product_and_reference(end_correction_rule, hardware_interp, step_size):
    g = small_geometry(views=3)
    x = RNG.random((1, *g.volume_shape)) - (0.5 if not end_correction_rule else 0.0)
    y = RNG.standard_normal((1, *g.sinogram_shape))
    op = lambda v: cone_projection3d(v, g, hardware_interp, step_size, "adjoint", end_correction_rule=end_correction_rule)  # noqa: E731
    forward, back = vjp(op, x, y)
    assert dot_product_gap(forward, y, x, back) <= 1e-5
    expected = reference_projection_adjoint(
        y[0], g, hardware_interp, step_size, end_correction_rule, volume=np.float32(x[0])
    )
    assert relative_max_error(back[0], expected) <= 1e-4


def test_projection_adjoint_is_linearised_at_the_input():
    # signed input: some rays have sum <= 0 and no end correction; the adjoint keeps that pattern
    g = small_geometry(views=2)
    x = RNG.standard_normal((1, *g.volume_shape))
    y = RNG.standard_normal((1, *g.sinogram_shape))
    forward, back = vjp(lambda v: cone_projection3d(v, g, grad_mode="adjoint"), x, y)
    assert dot_product_gap(forward, y, x, back) <= 1e-5
    linear = reference_projection_adjoint(y[0], g, end_correction_rule=False)
    assert relative_max_error(back[0], linear) > 1e-3  # the pattern differs from the always-corrected one


def test_backprojection_adjoint_dot_product_and_reference():
    g = small_geometry(views=4, convention="pyronn-1.x")
    y = RNG.standard_normal((1, *g.sinogram_shape))
    x = RNG.standard_normal((1, *g.volume_shape))
    forward, back = vjp(lambda s: cone_backprojection3d(s, g, grad_mode="adjoint"), y, x)
    assert dot_product_gap(forward, x, y, back) <= 1e-5
    assert relative_max_error(back[0], reference_backprojection_adjoint(x[0], g)) <= 1e-4


def test_numerical_jacobian_small_volume():
    g = GeometryCone3D((2, 3, 4), (1.0, 1.5, 1.2), (3, 4), (2.5, 2.5), 2, [0.4, 2.4], 500.0, 300.0)
    g.set_trajectory(circular_trajectory_3d(g))
    x = tf.constant(RNG.random((1, 2, 3, 4)), tf.float32)
    projection = tf.function(lambda v: cone_projection3d(v, g, grad_mode="adjoint", end_correction_rule=False))
    theoretical, numerical = tf.test.compute_gradient(projection, [x], delta=0.05)
    assert np.abs(theoretical[0]).max() > 0.1
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=2e-3 * np.abs(theoretical[0]).max())
    s = tf.constant(RNG.random((1, *g.sinogram_shape)), tf.float32)
    backprojection = tf.function(lambda v: cone_backprojection3d(v, g, grad_mode="adjoint"))
    theoretical, numerical = tf.test.compute_gradient(backprojection, [s], delta=0.05)
    assert np.abs(theoretical[0]).max() > 0.1
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=2e-3 * np.abs(theoretical[0]).max())


def test_pyronn_mode_gradients():
    g = small_geometry(views=3)
    x = RNG.random((1, *g.volume_shape))
    y = RNG.standard_normal((1, *g.sinogram_shape))
    _, grad_x = vjp(lambda v: cone_projection3d(v, g), x, y)
    expected = cone_backprojection3d(y, g).numpy()
    assert relative_max_error(grad_x, expected) <= 1e-6
    _, grad_y = vjp(lambda s: cone_backprojection3d(s, g, hardware_interp=False, step_size=0.5), y, x)
    expected = cone_projection3d(x, g, hardware_interp=False, step_size=0.5).numpy()
    assert relative_max_error(grad_y, expected) <= 1e-6
    # unmatched pair by design: the registered gradient is far from the true adjoint
    _, adjoint = vjp(lambda v: cone_projection3d(v, g, grad_mode="adjoint"), x, y)
    assert relative_max_error(grad_x, adjoint) > 0.5


def test_no_gradient_for_geometry():
    g = small_geometry(views=2)
    matrices = tf.Variable(g.projection_matrices)
    x = tf.constant(RNG.random((1, *g.volume_shape)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        total = tf.reduce_sum(cone_projection3d(x, g, projection_matrices=matrices))
        back = tf.reduce_sum(cone_backprojection3d(tf.ones((1, *g.sinogram_shape)), g, projection_matrices=matrices))
    assert tape.gradient(total, matrices) is None
    assert tape.gradient(back, matrices) is None


@pytest.mark.parametrize("grad_mode", [pytest.param("pyronn", marks=pytest.mark.slow), "adjoint"])
def test_gradients_inside_jit_compile_match_eager(grad_mode):
    g = small_geometry(views=2)
    x = tf.constant(RNG.random((1, *g.volume_shape)), tf.float32)
    y = tf.constant(RNG.standard_normal((1, *g.sinogram_shape)), tf.float32)

    def gradients(volume, sinogram):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([volume, sinogram])
            forward = tf.reduce_sum(cone_projection3d(volume, g, grad_mode=grad_mode) * sinogram)
            backward = tf.reduce_sum(cone_backprojection3d(sinogram, g, grad_mode=grad_mode) * volume)
        return tape.gradient(forward, volume), tape.gradient(backward, sinogram)

    eager = gradients(x, y)
    compiled = tf.function(gradients, jit_compile=True)(x, y)
    for a, b in zip(eager, compiled):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-5 * np.abs(a.numpy()).max())
