"""The native (C++ custom-op) kernels against the float64 reference, the XLA kernels, the adjoint
identity, thread counts and bad input. Skipped with the reason when the op library is not built
(no C++ compiler) or disabled; everything else then runs on the XLA path."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pyronn_ops import (
    GeometryCone3D,
    circular_trajectory_3d,
    cone_backprojection3d,
    cone_projection3d,
    reference_backprojection,
    reference_backprojection_adjoint,
    reference_projection,
    reference_projection_adjoint,
)
from pyronn_ops import native
from pyronn_ops.operator_setup import DEFAULT_CHUNK_ELEMENTS, resolve_setup
from tests.pyronn_ops.cone_cases import relative_max_error, small_geometry
from tests.pyronn_ops.test_gradients import dot_product_gap, vjp

LOADED = native.load()
pytestmark = pytest.mark.skipif(LOADED.library is None, reason=f"native kernels unavailable: {LOADED.reason}")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RNG = np.random.default_rng(23)
VOLUME = RNG.random((10, 12, 14))


@pytest.mark.parametrize("hardware_interp", [True, False])
@pytest.mark.parametrize("step_size", [0.5, 0.7, 1.0])
def test_projection_matches_reference(hardware_interp, step_size):
    # anisotropic voxels, a non-square detector and a short scan (small_geometry's defaults)
    g = small_geometry()
    expected = reference_projection(VOLUME, g, hardware_interp, step_size)
    actual = cone_projection3d(VOLUME[None], g, hardware_interp, step_size, backend="native").numpy()[0]
    assert expected.max() > 5.0
    assert relative_max_error(actual, expected) <= 1e-5


@pytest.mark.parametrize("convention", ["pyronn-0.1", "pyronn-1.x"])
def test_backprojection_matches_reference(convention):
    g = small_geometry(convention=convention)
    sinogram = RNG.random(g.sinogram_shape)
    actual = cone_backprojection3d(sinogram[None], g, backend="native").numpy()[0]
    assert relative_max_error(actual, reference_backprojection(sinogram, g)) <= 1e-5


def test_batch_with_a_geometry_per_sample_matches_reference():
    first = small_geometry(views=3)
    second = GeometryCone3D((10, 12, 14), (0.8, 1.0, 1.1), (12, 16), (1.8, 1.6), 3, [1.0, 4.0], 700.0, 450.0)
    second.set_trajectory(circular_trajectory_3d(second, "pyronn-1.x"))
    volumes = RNG.random((2, 10, 12, 14))
    sinograms = RNG.standard_normal((2, *first.sinogram_shape))
    projected = cone_projection3d(volumes, [first, second], False, 0.7, backend="native").numpy()
    back = cone_backprojection3d(sinograms, [first, second], backend="native").numpy()
    for index, g in enumerate((first, second)):
        assert relative_max_error(projected[index], reference_projection(volumes[index], g, False, 0.7)) <= 1e-5
        assert relative_max_error(back[index], reference_backprojection(sinograms[index], g)) <= 1e-5
    # per-sample matrices (B, N, 3, 4) with one shared geometry for the other parameters
    matrices = np.stack([first.projection_matrices_float64, first.projection_matrices_float64[::-1]])
    overridden = cone_projection3d(volumes, first, step_size=0.5, projection_matrices=matrices, backend="native").numpy()
    for index in range(2):
        expected = reference_projection(volumes[index], first, step_size=0.5, projection_matrices=matrices[index])
        assert relative_max_error(overridden[index], expected) <= 1e-5


@pytest.mark.parametrize("grad_mode", ["pyronn", "adjoint"])
def test_native_and_xla_agree_values_and_gradients(grad_mode):
    g = small_geometry(views=4)
    volume = RNG.standard_normal((2, *g.volume_shape))
    sinogram = RNG.standard_normal((2, *g.sinogram_shape))
    results = {}
    for backend in ("native", "xla"):
        forward = vjp(lambda v: cone_projection3d(v, g, step_size=0.7, grad_mode=grad_mode, backend=backend), volume, sinogram)
        back = vjp(lambda s: cone_backprojection3d(s, g, grad_mode=grad_mode, backend=backend), sinogram, volume)
        results[backend] = (*forward, *back)
    for native_value, xla_value in zip(results["native"], results["xla"]):
        assert relative_max_error(native_value, xla_value) <= 1e-5


@pytest.mark.parametrize("end_correction_rule", [False, True])
def test_projection_exact_adjoint(end_correction_rule):
    g = small_geometry(views=3)
    x = RNG.standard_normal((1, *g.volume_shape))  # signed: some rays lose the end correction under the rule
    y = RNG.standard_normal((1, *g.sinogram_shape))
    op = lambda v: cone_projection3d(v, g, True, 0.7, "adjoint", end_correction_rule=end_correction_rule, backend="native")  # noqa: E731
    forward, back = vjp(op, x, y)
    assert dot_product_gap(forward, y, x, back) <= 1e-5
    expected = reference_projection_adjoint(y[0], g, True, 0.7, end_correction_rule, volume=np.float32(x[0]))
    assert relative_max_error(back[0], expected) <= 1e-5


def test_backprojection_exact_adjoint():
    g = small_geometry(views=4, convention="pyronn-1.x")
    y = RNG.standard_normal((1, *g.sinogram_shape))
    x = RNG.standard_normal((1, *g.volume_shape))
    forward, back = vjp(lambda s: cone_backprojection3d(s, g, grad_mode="adjoint", backend="native"), y, x)
    assert dot_product_gap(forward, x, y, back) <= 1e-5
    assert relative_max_error(back[0], reference_backprojection_adjoint(x[0], g)) <= 1e-5


def test_results_do_not_depend_on_the_thread_count(tmp_path):
    outputs = []
    for threads in (1, 3):
        out = tmp_path / f"threads{threads}.npz"
        completed = subprocess.run(
            [sys.executable, "-m", "tests.pyronn_ops.native_run", str(threads), str(out)],
            cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), check=False,
        )
        assert completed.returncode == 0, completed.stderr[-2000:]
        outputs.append(np.load(out))
    one, three = outputs
    assert sorted(one.files) == sorted(three.files) and len(one.files) == 8
    for name in one.files:
        assert np.abs(one[name]).max() > 0
        np.testing.assert_array_equal(one[name], three[name], err_msg=name)  # bit-identical


@pytest.mark.parametrize("backend", ["native", "xla"])
def test_bad_input_gives_the_same_errors_as_xla(backend):
    g = small_geometry(views=2)
    volume = np.zeros((1, *g.volume_shape), np.float32)
    with pytest.raises(ValueError, match=r"volume must have rank 4 \[B, 10, 12, 14\]"):
        cone_projection3d(volume[0], g, backend=backend)
    with pytest.raises(ValueError, match=r"volume shape \(1, 10, 12, 15\) does not match the geometry"):
        cone_projection3d(np.zeros((1, 10, 12, 15)), g, backend=backend)  # larger than the geometry says
    with pytest.raises(ValueError, match="projection_matrices must be finite"):
        cone_projection3d(volume, g, projection_matrices=np.full((2, 3, 4), np.nan), backend=backend)
    with pytest.raises(ValueError, match=r"sinogram must have rank 4 \[B, 2, 12, 16\]"):
        cone_backprojection3d(np.zeros(g.sinogram_shape), g, backend=backend)


def test_raw_ops_reject_bad_geometry_without_crashing():
    # inside a graph the Python checks cannot see tensor values: the op checks them itself
    g = small_geometry(views=2)
    setup = resolve_setup(g, None, True, True, None, DEFAULT_CHUNK_ELEMENTS)
    ops = LOADED.library.module
    volume = tf.zeros((1, *g.volume_shape))
    matrices = tf.constant(g.projection_matrices_float64[None])
    origin, spacing = setup.origin_xyz, setup.spacing_xyz
    step = tf.constant([1.0], tf.float64)

    def project(matrices=matrices, origin=origin, spacing=spacing, step=step, volume=volume):
        return ops.pyronn_cone_projection(volume, matrices, origin, spacing, step, detector_shape=[12, 16],
                                          hardware_interp=True, end_correction_rule=True)

    nan_matrices = tf.tensor_scatter_nd_update(matrices, [[0, 1, 0, 0]], [np.nan])
    singular = tf.concat([matrices[..., :2], matrices[..., :1], matrices[..., 3:]], axis=-1)
    cases = [
        (lambda: tf.function(project)(matrices=nan_matrices), "projection_matrices must be finite"),
        (lambda: project(matrices=singular), r"P\[:, :3\] must be invertible"),
        (lambda: project(step=tf.constant([0.0], tf.float64)), "step_size must be positive and finite"),
        (lambda: project(spacing=-spacing), "volume_spacing must be positive and finite"),
        (lambda: project(matrices=tf.concat([matrices, matrices], 0), volume=tf.zeros((3, *g.volume_shape))),
         r"projection_matrices batch \(2\) does not match the batch size 3"),
        (lambda: project(volume=tf.zeros(g.volume_shape)), "volume must have rank 4"),
        (lambda: project(matrices=matrices[..., :3]), r"projection_matrices must have shape \(G, N, 3, 4\)"),
        (lambda: ops.pyronn_cone_backprojection(tf.zeros((1, 3, 12, 16)), matrices, origin, spacing, step,
                                                volume_shape=[10, 12, 14]), "does not match the geometry"),
    ]
    for call, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            call()
    assert np.all(project()[0].numpy() == 0.0)  # the process is still fine
