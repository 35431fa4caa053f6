"""cone_projection3d (float32 TF) against the float64 reference and hand-computed line integrals."""

import numpy as np
import pytest
import tensorflow as tf

from pyronn_ops import GeometryCone3D, circular_trajectory_3d, cone_projection3d, reference_projection
from tests.pyronn_ops.cone_cases import relative_max_error, small_geometry

RNG = np.random.default_rng(7)
VOLUME = RNG.random((10, 12, 14))


@pytest.mark.parametrize("hardware_interp", [True, False])
@pytest.mark.parametrize("step_size", [1.0, 0.5])
def test_matches_reference_short_scan_anisotropic_non_square(hardware_interp, step_size):
    g = small_geometry()
    expected = reference_projection(VOLUME, g, hardware_interp, step_size)
    actual = cone_projection3d(VOLUME[None], g, hardware_interp, step_size).numpy()[0]
    assert actual.dtype == np.float32 and expected.max() > 5.0
    assert relative_max_error(actual, expected) <= 1e-4


@pytest.mark.parametrize("end_correction_rule", [True, False])
def test_matches_reference_signed_volume_other_convention(end_correction_rule):
    g = small_geometry(convention="pyronn-1.x", angular_range=2 * np.pi, views=3)
    volume = RNG.standard_normal(g.volume_shape)
    expected = reference_projection(volume, g, end_correction_rule=end_correction_rule)
    actual = cone_projection3d(volume[None], g, end_correction_rule=end_correction_rule).numpy()[0]
    assert relative_max_error(actual, expected) <= 1e-4


def test_matches_reference_close_source_wide_cone():
    # the source 40 mm from the isocentre of a 20 mm volume: long oblique chords, the static
    # per-ray sample count (source-distance bound) must still cover every ray
    g = GeometryCone3D((10, 12, 14), (1.0, 1.2, 0.9), (16, 20), (4.0, 4.0), 3, [0.2, 5.0], 80.0, 40.0)
    g.set_trajectory(circular_trajectory_3d(g))
    expected = reference_projection(VOLUME, g, step_size=0.5)
    actual = cone_projection3d(VOLUME[None], g, step_size=0.5).numpy()[0]
    assert relative_max_error(actual, expected) <= 1e-4


@pytest.mark.parametrize("hardware_interp, lost_length", [(True, 0.625), (False, 0.75)])
def test_constant_volume_central_ray_hand_computed(hardware_interp, lost_length):
    # View 0 of the 0.1 convention: the central pixel (H/2, W/2) sees the x axis through the centre
    # row of voxels. hardware box: samples at x = X-1 .. 0, exit at -0.5 (f = c/2) ->
    # c*(X-1) + 0.25*(c + c/2) = c*(X - 0.625); software box [0, X]: first sample at has
    # f = c/2, exit at 0 -> c*(X - 0.75). Times the x spacing (mm per index unit).
    g = GeometryCone3D((9, 7, 11), (1.0, 1.1, 0.7), (8, 10), (1.0, 1.0), 4, 2 * np.pi, 1200.0, 750.0)
    g.set_trajectory(circular_trajectory_3d(g))
    value = 2.5
    expected = value * 0.7 * (11 - lost_length)
    actual = cone_projection3d(np.full((1, 9, 7, 11), value), g, hardware_interp).numpy()[0, 0, 4, 5]
    assert actual == pytest.approx(expected, rel=1e-5)
    reference = reference_projection(np.full((9, 7, 11), value), g, hardware_interp)[0, 4, 5]
    assert reference == pytest.approx(expected, rel=1e-12)


def test_linearity():
    g = small_geometry(views=3)
    x, y = RNG.standard_normal((2, 1, *g.volume_shape))
    combined = cone_projection3d(2 * x - 3 * y, g, end_correction_rule=False).numpy().astype(np.float64)
    separate = 2 * cone_projection3d(x, g, end_correction_rule=False).numpy() - 3 * cone_projection3d(
        y, g, end_correction_rule=False).numpy()
    assert relative_max_error(combined, separate) <= 1e-5
    # with PYRO-NN's "> 0" rule the operator is linear on non-negative inputs only
    x, y = np.abs(x), np.abs(y)
    combined = cone_projection3d(2 * x + 3 * y, g).numpy().astype(np.float64)
    separate = 2 * cone_projection3d(x, g).numpy() + 3 * cone_projection3d(y, g).numpy()
    assert relative_max_error(combined, separate) <= 1e-5
    flipped = -cone_projection3d(-x, g).numpy()
    positive = cone_projection3d(x, g).numpy()
    assert 1e-4 < relative_max_error(flipped, positive) < 0.1


def test_batch_with_per_sample_geometry_equals_separate_calls():
    first = small_geometry(views=3)
    second = GeometryCone3D((10, 12, 14), (0.8, 1.0, 1.1), (12, 16), (1.8, 1.6), 3, [1.0, 4.0], 700.0, 450.0)
    second.set_trajectory(circular_trajectory_3d(second, "pyronn-1.x"))
    volumes = RNG.random((2, 10, 12, 14))
    batched = cone_projection3d(volumes, [first, second], step_size=0.7).numpy()
    for index, g in enumerate((first, second)):
        alone = cone_projection3d(volumes[index : index + 1], g, step_size=0.7).numpy()[0]
        np.testing.assert_allclose(batched[index], alone, rtol=1e-6, atol=1e-6)
    expected = reference_projection(volumes[1], second, step_size=0.7)
    assert relative_max_error(batched[1], expected) <= 1e-4
    # the same through batched matrices (B, N, 3, 4) with the first geometry's other parameters
    matrices = np.stack([first.projection_matrices, first.projection_matrices_float64[::-1]])
    overridden = cone_projection3d(volumes, first, step_size=0.7, projection_matrices=matrices).numpy()
    np.testing.assert_allclose(overridden[0], batched[0], rtol=1e-5, atol=1e-5)
    expected = reference_projection(volumes[1], first, step_size=0.7, projection_matrices=matrices[1])
    assert relative_max_error(overridden[1], expected) <= 1e-4


def test_chunking_and_tf_function_modes_agree_with_eager():
    g = small_geometry(views=3)
    volume = tf.constant(RNG.random((2, *g.volume_shape)), tf.float32)
    eager = cone_projection3d(volume, g).numpy()
    tiny_chunks = cone_projection3d(volume, g, chunk_elements=997).numpy()  # 31 rays per chunk
    graph = tf.function(lambda v: cone_projection3d(v, g))(volume).numpy()
    compiled = tf.function(lambda v: cone_projection3d(v, g), jit_compile=True)(volume).numpy()
    unknown_batch = tf.function(
        lambda v: cone_projection3d(v, g), input_signature=[tf.TensorSpec([None, *g.volume_shape], tf.float32)]
    )(volume).numpy()
    for other in (tiny_chunks, graph, compiled, unknown_batch):
        np.testing.assert_allclose(other, eager, rtol=1e-5, atol=1e-5 * eager.max())


def test_bad_input_raises_clear_errors():
    g = small_geometry(views=2)
    volume = np.zeros((1, *g.volume_shape), np.float32)
    with pytest.raises(ValueError, match="volume must have rank 4"):
        cone_projection3d(volume[0], g)
    with pytest.raises(ValueError, match="volume shape .* does not match the geometry"):
        cone_projection3d(np.zeros((1, 10, 12, 13)), g)
    with pytest.raises(ValueError, match="floating-point"):
        cone_projection3d(volume.astype(np.int32), g)
    with pytest.raises(ValueError, match="grad_mode"):
        cone_projection3d(volume, g, grad_mode="exact")
    with pytest.raises(ValueError, match="backend"):
        cone_projection3d(volume, g, backend="cuda")
    with pytest.raises(ValueError, match="step_size"):
        cone_projection3d(volume, g, step_size=0.0)
    with pytest.raises(ValueError, match="projection_matrices"):
        cone_projection3d(volume, g, projection_matrices=np.zeros((3, 3, 4)))
    with pytest.raises(ValueError, match="projection_matrices must be finite"):
        cone_projection3d(volume, g, projection_matrices=np.full((2, 3, 4), np.inf))
    with pytest.raises(ValueError, match="per-sample geometries"):
        cone_projection3d(np.zeros((3, *g.volume_shape)), [g, g])
    with pytest.raises(ValueError, match="geometry must be"):
        cone_projection3d(volume, "geometry")
    bare = GeometryCone3D((10, 12, 14), (1, 1, 1), (12, 16), (1, 1), 2, 1.0, 600.0, 400.0)
    with pytest.raises(ValueError, match="set_trajectory"):
        cone_projection3d(volume, bare)
