"""Backends: which one "auto" runs (native op library present or not, inside XLA or not, and the
log line that says so), "xla" (cached compiled kernels) and "tf" (plain ops) agreeing with each
other and with the float64 reference, gradients, and reuse of one compiled kernel across geometries."""

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pyronn_ops import cone_backprojection3d, cone_projection3d, native, reference_backprojection, reference_projection
from pyronn_ops.ops import clear_kernel_cache, compiled_kernel
from pyronn_ops.operator_setup import DEFAULT_CHUNK_ELEMENTS, resolve_setup
from tests.pyronn_ops.cone_cases import relative_max_error, small_geometry

RNG = np.random.default_rng(11)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NATIVE_LOADED = native.load().library is not None
NEEDS_NATIVE = pytest.mark.skipif(not NATIVE_LOADED, reason=f"native kernels unavailable: {native.load().reason}")
# two projections with backend="auto" and INFO logging; prints max |value - float64 reference| / max |reference|
AUTO_SCRIPT = """
import logging, numpy as np
logging.basicConfig(level=logging.INFO)
from pyronn_ops import cone_projection3d, reference_projection
from tests.pyronn_ops.cone_cases import relative_max_error, small_geometry
g = small_geometry(views=2)
volume = np.random.default_rng(0).random(g.volume_shape)
cone_projection3d(volume[None], g)
print(relative_max_error(cone_projection3d(volume[None], g).numpy()[0], reference_projection(volume, g)))
"""


def _relative(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def _vjp(operator, x: np.ndarray, upstream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = operator(x)
    return y.numpy(), tape.gradient(y, x, output_gradients=tf.constant(upstream, tf.float32)).numpy()


def test_auto_runs_xla_and_says_so_without_the_library(
    tmp_path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    missing = str(tmp_path / "pyronn_kernels.so")  # a path no earlier call has announced
    monkeypatch.setenv(native.LIBRARY_ENV, missing)
    caplog.set_level(logging.INFO, logger="pyronn_ops")
    g = small_geometry(views=2)
    volume = RNG.random(g.volume_shape)
    clear_kernel_cache()
    for _ in range(2):
        values = cone_projection3d(volume[None], g).numpy()[0]
        assert relative_max_error(values, reference_projection(volume, g)) <= 1e-5
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("pyronn_ops: cone-beam kernels run on")]
    assert lines == [f"pyronn_ops: cone-beam kernels run on the xla backend (native library {missing} not built (run `make native`))"]
    setup = resolve_setup(g, None, True, True, None, DEFAULT_CHUNK_ELEMENTS)
    assert compiled_kernel("project", setup).experimental_get_tracing_count() == 1  # the cached XLA kernel ran


@NEEDS_NATIVE
def test_auto_runs_native_and_says_so_with_the_library() -> None:
    # a fresh process: this process may have announced its choice already
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run([sys.executable, "-c", AUTO_SCRIPT], cwd=ROOT, env=environment, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert float(completed.stdout.strip().splitlines()[-1]) <= 1e-5
    lines = [line for line in completed.stderr.splitlines() if "pyronn_ops: cone-beam kernels run on" in line]
    assert len(lines) == 1 and lines[0].endswith(f"run on the native backend (native library {native.load().library.path})")


def test_auto_chooses_per_call_site_observable_in_the_graph() -> None:
    # plain tf.function: the custom op when the library is loaded, else XLA kernels;
    # jit_compile=True: always the XLA kernels (custom ops cannot be compiled by XLA)
    g = small_geometry(views=2)
    volume = tf.constant(RNG.random((1, *g.volume_shape)), tf.float32)
    expected = reference_projection(volume.numpy()[0].astype(np.float64), g)
    for jit_compile, native_expected in ((False, NATIVE_LOADED), (True, False)):
        clear_kernel_cache()
        function = tf.function(lambda v: cone_projection3d(v, g), jit_compile=jit_compile)
        graph = function.get_concrete_function(volume).graph
        op_types = {op.type for op in graph.get_operations()}
        assert ("PyronnConeProjection" in op_types) == native_expected
        assert relative_max_error(function(volume).numpy()[0], expected) <= 1e-5


def test_explicit_native_backend_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    g = small_geometry(views=2)
    volume = np.zeros((1, *g.volume_shape), np.float32)
    if NATIVE_LOADED:
        with pytest.raises(ValueError, match=r"backend='native' cannot run inside tf.function\(jit_compile=True\)"):
            tf.function(lambda v: cone_projection3d(v, g, backend="native"), jit_compile=True)(volume)
    monkeypatch.setenv(native.LIBRARY_ENV, "off")
    with pytest.raises(ValueError, match="backend='native' is not available: native kernels disabled"):
        cone_projection3d(volume, g, backend="native")
    with pytest.raises(ValueError, match="backend must be one of"):
        cone_backprojection3d(np.zeros((1, *g.sinogram_shape)), g, backend="cuda")


@pytest.mark.parametrize("grad_mode", ["pyronn", "adjoint"])
def test_xla_and_tf_backends_agree_with_each_other_and_the_reference(grad_mode: str) -> None:
    g = small_geometry(views=3)
    volume = RNG.random((1, *g.volume_shape))
    sinogram = RNG.random((1, *g.sinogram_shape))
    results = {}
    for backend in ("xla", "tf"):
        forward, forward_grad = _vjp(lambda v: cone_projection3d(v, g, grad_mode=grad_mode, backend=backend), volume, sinogram)
        back, back_grad = _vjp(lambda s: cone_backprojection3d(s, g, grad_mode=grad_mode, backend=backend), sinogram, volume)
        results[backend] = (forward, forward_grad, back, back_grad)
    for xla_value, tf_value in zip(results["xla"], results["tf"]):
        assert _relative(xla_value, tf_value) <= 1e-6
    # independent truth for the values (float64 reference)
    assert relative_max_error(results["xla"][0][0], reference_projection(volume[0], g)) <= 1e-4
    assert relative_max_error(results["xla"][2][0], reference_backprojection(sinogram[0], g)) <= 1e-4


@pytest.mark.parametrize("jit_compile", [False, True])
def test_default_backend_inside_caller_tf_function(jit_compile: bool) -> None:
    g = small_geometry(views=2)
    volume = tf.constant(RNG.random((1, *g.volume_shape)), tf.float32)

    @tf.function(jit_compile=jit_compile)
    def loss_and_gradient(v: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(v)
            loss = tf.reduce_sum(cone_projection3d(v, g) ** 2)
        return loss, tape.gradient(loss, v)

    loss, gradient = loss_and_gradient(volume)
    projection = reference_projection(volume.numpy()[0].astype(np.float64), g)
    assert abs(float(loss) - np.sum(projection**2)) <= 1e-4 * np.sum(projection**2)
    # pyronn gradient of sum(A(x)^2) is backproject(2 A(x))
    expected = reference_backprojection(2.0 * projection, g)
    assert relative_max_error(gradient.numpy()[0], expected) <= 1e-4


def test_geometries_of_equal_shapes_reuse_one_compiled_kernel() -> None:
    first = small_geometry(volume_spacing=(1.0, 1.2, 0.9), angular_range=(0.3, 2.5))
    second = small_geometry(volume_spacing=(1.1, 1.0, 1.0), angular_range=(0.1, 2.0))
    # a fixed step keeps K equal; different spacing, matrices and multiplier are tensor arguments
    setups = [resolve_setup(g, 1.0, True, True, None, DEFAULT_CHUNK_ELEMENTS) for g in (first, second)]
    assert setups[0].slots == setups[1].slots  # equal static configuration
    assert compiled_kernel("project", setups[0]) is compiled_kernel("project", setups[1])
    kernels = [compiled_kernel(kind, setups[0]) for kind in ("project", "backproject")]
    volume = RNG.random((1, *first.volume_shape))
    sinogram = RNG.random((1, *first.sinogram_shape))
    counts = None
    for g in (first, second):
        # same step so that both share K; the values still differ per geometry (checked below)
        projection = cone_projection3d(volume, g, step_size=1.0, backend="xla").numpy()
        back = cone_backprojection3d(sinogram, g, backend="xla").numpy()
        assert relative_max_error(projection[0], reference_projection(volume[0], g, step_size=1.0)) <= 1e-4
        assert relative_max_error(back[0], reference_backprojection(sinogram[0], g)) <= 1e-4
        now = [kernel.experimental_get_tracing_count() for kernel in kernels]
        assert all(count >= 1 for count in now)
        if counts is not None:
            assert now == counts  # the second geometry did not retrace
        counts = now
