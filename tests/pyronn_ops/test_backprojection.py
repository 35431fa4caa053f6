"""cone_backprojection3d (float32 TF) against the float64 reference and a hand-computed value."""

import numpy as np
import pytest
import tensorflow as tf

from pyronn_ops import GeometryCone3D, circular_trajectory_3d, cone_backprojection3d, reference_backprojection
from tests.pyronn_ops.cone_cases import relative_max_error, small_geometry

RNG = np.random.default_rng(11)


@pytest.mark.parametrize("convention", ["pyronn-0.1", "pyronn-1.x"])
@pytest.mark.parametrize("hardware_interp", [True, False])
def test_matches_reference(convention, hardware_interp):
    # the detector (12 x 16 at 2 x 1.5 mm) is smaller than the volume's shadow: zero-outside matters
    g = small_geometry(convention=convention)
    sinogram = RNG.random(g.sinogram_shape)
    expected = reference_backprojection(sinogram, g)
    actual = cone_backprojection3d(sinogram[None], g, hardware_interp).numpy()[0]
    assert actual.dtype == np.float32
    assert relative_max_error(actual, expected) <= 1e-4


def test_constant_sinogram_at_isocentre_hand_computed():
    # The centre voxel sits at the isocentre: w = SID in every view and (u, v) is the principal
    # point, so the value is multiplier * q * N / SID^2 = q * SDD * du * pi / SID.
    g = GeometryCone3D((5, 7, 9), (1.0, 1.0, 1.0), (16, 20), (1.2, 1.6), 6, 2 * np.pi, 1000.0, 600.0)
    g.set_trajectory(circular_trajectory_3d(g))
    volume = cone_backprojection3d(np.full((1, *g.sinogram_shape), 0.75), g).numpy()[0]
    assert volume[2, 3, 4] == pytest.approx(0.75 * 1000.0 * 1.6 * np.pi / 600.0, rel=1e-5)


def test_linearity_batch_and_per_sample_geometry():
    first = small_geometry(views=4)
    second = GeometryCone3D((10, 12, 14), (0.9, 1.1, 1.0), (12, 16), (1.7, 1.3), 4, [0.5, 3.5], 650.0, 420.0)
    second.set_trajectory(circular_trajectory_3d(second, "pyronn-1.x"))
    sinograms = RNG.standard_normal((2, *first.sinogram_shape))
    batched = cone_backprojection3d(sinograms, [first, second]).numpy()
    for index, g in enumerate((first, second)):
        expected = reference_backprojection(sinograms[index], g)
        assert relative_max_error(batched[index], expected) <= 1e-4
    combined = cone_backprojection3d(2 * sinograms - 0.5 * sinograms[::-1], first).numpy().astype(np.float64)
    separate = cone_backprojection3d(sinograms, first).numpy()
    assert relative_max_error(combined, 2 * separate - 0.5 * separate[::-1]) <= 1e-5


def test_chunking_and_tf_function_modes_agree_with_eager():
    g = small_geometry(views=4)
    sinogram = tf.constant(RNG.random((2, *g.sinogram_shape)), tf.float32)
    eager = cone_backprojection3d(sinogram, g).numpy()
    by_slab = cone_backprojection3d(sinogram, g, chunk_elements=2 * 12 * 14 * 5).numpy()  # 2 slabs, 1 view
    graph = tf.function(lambda s: cone_backprojection3d(s, g))(sinogram).numpy()
    compiled = tf.function(lambda s: cone_backprojection3d(s, g), jit_compile=True)(sinogram).numpy()
    for other in (by_slab, graph, compiled):
        np.testing.assert_allclose(other, eager, rtol=1e-5, atol=1e-5 * eager.max())


def test_bad_input_raises_clear_errors():
    g = small_geometry(views=2)
    with pytest.raises(ValueError, match="sinogram must have rank 4"):
        cone_backprojection3d(np.zeros(g.sinogram_shape), g)
    with pytest.raises(ValueError, match="sinogram shape .* does not match the geometry"):
        cone_backprojection3d(np.zeros((1, 3, 12, 16)), g)
    with pytest.raises(ValueError, match="grad_mode"):
        cone_backprojection3d(np.zeros((1, *g.sinogram_shape)), g, grad_mode="pyro")
