"""Public cone-beam operators with PYRO-NN or exact-adjoint gradients.

``geometry`` arguments (see :mod:`pyronn_ops.operator_setup`): one :class:`GeometryCone3D`
shared by the batch, or a list of ``B`` geometries (one scanner per batch element); optionally
``projection_matrices`` ``(N, 3, 4)`` or ``(B, N, 3, 4)`` overrides the matrices. Geometry values
are not differentiated (no gradient flows to them).

Gradient modes:

* ``"pyronn"``: PYRO-NN's registered gradients. The projection's gradient is the FDK-weighted
  back-projection *with* ``projection_multiplier``; the back-projection's gradient is the
  projection (without multiplier). These are not transposes of each other.
* ``"adjoint"``: exact transposes of the same discretisations. For the projection this is the
  transpose of the ray-driven trilinear projector *linearised at the current input*: the rays
  whose end correction was applied in the forward pass (sum > 0 rule) keep it in the adjoint. With
  ``end_correction_rule=False`` the projector is linear and the adjoint is its exact transpose.

Backends (``backend=``, chosen by :func:`pyronn_ops.backends.resolve_backend`):

* ``"auto"`` (default): ``"native"`` when the op library is built and loadable and the call is not
  compiled by XLA, else ``"xla"``; one log line (logger ``pyronn_ops``) says which runs and why.
* ``"native"``: the C++ kernels of :mod:`pyronn_ops.native` (TensorFlow custom ops, multi-threaded
  on the CPU thread pool; ``make native`` builds them). They run eagerly and in plain
  ``tf.function`` graphs but not inside ``tf.function(jit_compile=True)`` (custom ops are not XLA
  ops), where ``"auto"`` uses ``"xla"``. Results agree with ``"xla"`` to float32 rounding.
* ``"xla"``: every kernel (projection, back-projection and the kernels of their
  gradients) runs inside a ``tf.function(jit_compile=True)`` created once per static
  configuration and reused. Geometry values (matrices, origin, spacing, step, multiplier) are
  TENSOR arguments, so a new scanner with the same shapes reuses the compiled kernel. Eager
  calls, plain ``tf.function`` and ``tf.function(jit_compile=True)`` all get the fused kernels
  (about 15x faster than unfused ops on CPU; ``bench/projector.py``).
  The compiled functions live in a bounded LRU cache (:data:`KERNEL_CACHE_SIZE` entries) keyed
  by the kernel kind and :meth:`ConeSetup.static_key` (shapes, groups, clip box, end-correction
  rule, chunk size, sample slots K); TensorFlow's own trace cache inside each entry adds one
  trace per distinct input shape/dtype signature (e.g. batch size). All kernel ops are XLA
  ops (gathers, segment sums, while loops, small float64 linear algebra) that exist on
  CPU and GPU; nothing in them is CPU-only.
* ``"tf"``: the same kernels as plain TensorFlow ops, not compiled (debugging, devices without
  XLA). Results agree with ``"xla"`` to float32 rounding.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Callable

import numpy as np
import tensorflow as tf

from pyronn_ops.backends import DEFAULT_BACKEND, resolve_backend
from pyronn_ops.backprojection import backproject, backproject_adjoint
from pyronn_ops.native import NATIVE_KERNELS
from pyronn_ops.operator_setup import DEFAULT_CHUNK_ELEMENTS, ConeSetup, GeometryArg, check_input, resolve_setup
from pyronn_ops.projection import project, project_adjoint

GRAD_MODES = ("pyronn", "adjoint")
KERNEL_CACHE_SIZE = 32

# kernel kind -> function(data, setup, *extra) -> tensor(s); "extra" are further tensor inputs
_KERNELS: dict[str, Callable] = {
    "project": project,
    "project_adjoint": project_adjoint,
    "backproject": backproject,
    "backproject_adjoint": backproject_adjoint,
}
_COMPILED: "OrderedDict[tuple, tf.types.experimental.PolymorphicFunction]" = OrderedDict()


def compiled_kernel(kind: str, setup: ConeSetup) -> "tf.types.experimental.PolymorphicFunction":
    """The cached ``tf.function(jit_compile=True)`` running kernel ``kind`` for ``setup``'s static
    configuration (created on first use; least recently used entries beyond
    :data:`KERNEL_CACHE_SIZE` are dropped).

    Its signature is ``(data, matrices [G, N, 3, 4], origin [G, 3], spacing [G, 3], step [G],
    multiplier [G], *extra)`` with the geometry as float64 tensors; ``data`` is the kernel's
    float32 input (volume ``[B, Z, Y, X]`` or sinogram ``[B, N, H, W]``), ``extra`` the forward
    pass' end-correction pattern for ``"project_adjoint"``.
    """
    key = (kind, setup.static_key())
    function = _COMPILED.get(key)
    if function is not None:
        _COMPILED.move_to_end(key)
        return function
    kernel = _KERNELS[kind]
    # only static fields of this setup are used inside: every geometry tensor is replaced by an argument
    template = dataclasses.replace(setup, known_sources=None)

    def run(data, matrices, origin, spacing, step, multiplier, *extra):
        local = dataclasses.replace(
            template, matrices=matrices, origin_xyz=origin, spacing_xyz=spacing, step=step, multiplier=multiplier
        )
        return kernel(data, local, *extra)

    function = tf.function(run, jit_compile=True, autograph=False)
    _COMPILED[key] = function
    while len(_COMPILED) > KERNEL_CACHE_SIZE:
        _COMPILED.popitem(last=False)
    return function


def clear_kernel_cache() -> None:
    """Drop every cached compiled kernel (they are rebuilt on next use)."""
    _COMPILED.clear()


def _run_kernel(kind: str, backend: str, data: tf.Tensor, setup: ConeSetup, *extra: tf.Tensor):
    """Run kernel ``kind`` with the resolved backend (inputs already stop-gradient'ed)."""
    if backend == "native":
        return NATIVE_KERNELS[kind](data, setup, *extra)
    if backend == "tf":
        return _KERNELS[kind](data, setup, *extra)
    geometry = (setup.matrices, setup.origin_xyz, setup.spacing_xyz, setup.step, setup.multiplier)
    return compiled_kernel(kind, setup)(data, *geometry, *extra)


def _check_grad_mode(grad_mode: str) -> None:
    if grad_mode not in GRAD_MODES:
        raise ValueError(f"grad_mode must be one of {GRAD_MODES}, got {grad_mode!r}")


def cone_projection3d(
    volume: tf.Tensor,
    geometry: GeometryArg,
    hardware_interp: bool = True,
    step_size: float | None = None,
    grad_mode: str = "pyronn",
    *,
    projection_matrices: tf.Tensor | np.ndarray | None = None,
    end_correction_rule: bool = True,
    backend: str = DEFAULT_BACKEND,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> tf.Tensor:
    """Ray-driven trilinear cone-beam forward projection (PYRO-NN ``cone_projection3d``).

    One ray per detector pixel from the source through the pixel centre; the line is clipped to
    the box ``[-0.5, n-0.5]`` (``hardware_interp=True``) or ``[0, n]`` per axis in voxel-index
    units, sampled at ``alpha_in + step/2 + k*step`` with trilinear interpolation (zero outside),
    summed with the first sample halved, end-corrected up to the exit point (only where the sum is
    > 0 when ``end_correction_rule``), and scaled to mm.

    Args:
        volume: ``[B, Z, Y, X]`` float, value per mm (cast to float32).
        geometry: a :class:`GeometryCone3D` with a trajectory, or a list of ``B`` of them.
        hardware_interp: clip box choice (see above).
        step_size: sampling step in voxel-index units; None = each geometry's ``step_size``.
        grad_mode: ``"pyronn"`` or ``"adjoint"`` (module docstring).
        projection_matrices: optional ``(N, 3, 4)`` / ``(B, N, 3, 4)`` matrices overriding the
            geometry's (world mm -> homogeneous pixel indices).
        end_correction_rule: PYRO-NN's "end correction only if the sum > 0" (False: always, linear).
        backend: ``"auto"`` (default: native kernels when available, else XLA), ``"native"``,
            ``"xla"`` or ``"tf"``; see the module docstring.
        chunk_elements: ray samples processed per chunk; bounds the working memory.

    Returns:
        ``[B, N, H, W]`` float32 line integrals in value * mm.

    Raises:
        ValueError: bad rank or shape of ``volume``, bad geometry, ``grad_mode`` or ``backend``
            (or ``"native"`` where it cannot run).
    """
    _check_grad_mode(grad_mode)
    backend = resolve_backend(backend)
    setup = resolve_setup(geometry, step_size, hardware_interp, end_correction_rule, projection_matrices, chunk_elements)
    volume = check_input("volume", volume, setup.volume_shape, setup.groups)

    @tf.custom_gradient
    def projection(x: tf.Tensor):
        # stop_gradient: the kernel's while loops must not record intermediates for autodiff
        values, applied = _run_kernel("project", backend, tf.stop_gradient(x), setup)

        def gradient(upstream: tf.Tensor) -> tf.Tensor:
            upstream = tf.stop_gradient(tf.cast(upstream, tf.float32))
            if grad_mode == "pyronn":
                return _run_kernel("backproject", backend, upstream, setup)
            return _run_kernel("project_adjoint", backend, upstream, setup, applied)

        return values, gradient

    return projection(volume)


def cone_backprojection3d(
    sinogram: tf.Tensor,
    geometry: GeometryArg,
    hardware_interp: bool = True,
    grad_mode: str = "pyronn",
    *,
    step_size: float | None = None,
    projection_matrices: tf.Tensor | np.ndarray | None = None,
    end_correction_rule: bool = True,
    backend: str = DEFAULT_BACKEND,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> tf.Tensor:
    """Voxel-driven FDK-weighted cone-beam back-projection (PYRO-NN ``cone_backprojection3d``).

    For each voxel centre ``X`` and view ``p``: ``(a, b, w) = P_p (X, 1)``, bilinear sample ``q``
    of view ``p`` at ``(u, v) = (a/w, b/w)`` pixel indices (zero outside the detector), accumulate
    ``q / w**2`` (w in mm); finally multiply by ``projection_multiplier``. No cosine weighting.

    Args:
        sinogram: ``[B, N, H, W]`` float (cast to float32).
        geometry: a :class:`GeometryCone3D` with a trajectory, or a list of ``B`` of them.
        hardware_interp, step_size, end_correction_rule: used only by the ``"pyronn"`` gradient,
            which is :func:`cone_projection3d` of the upstream gradient with these settings.
        grad_mode: ``"pyronn"`` or ``"adjoint"`` (module docstring).
        projection_matrices: optional ``(N, 3, 4)`` / ``(B, N, 3, 4)`` matrix override.
        backend: ``"auto"`` (default), ``"native"``, ``"xla"`` or ``"tf"``; see the module docstring.
        chunk_elements: voxel-view pairs processed per chunk; bounds the working memory.

    Returns:
        ``[B, Z, Y, X]`` float32.

    Raises:
        ValueError: bad rank or shape of ``sinogram``, bad geometry, ``grad_mode`` or ``backend``
            (or ``"native"`` where it cannot run).
    """
    _check_grad_mode(grad_mode)
    backend = resolve_backend(backend)
    setup = resolve_setup(geometry, step_size, hardware_interp, end_correction_rule, projection_matrices, chunk_elements)
    sinogram = check_input("sinogram", sinogram, setup.sinogram_shape, setup.groups)

    @tf.custom_gradient
    def backprojection(y: tf.Tensor):
        values = _run_kernel("backproject", backend, tf.stop_gradient(y), setup)

        def gradient(upstream: tf.Tensor) -> tf.Tensor:
            upstream = tf.stop_gradient(tf.cast(upstream, tf.float32))
            if grad_mode == "pyronn":
                return _run_kernel("project", backend, upstream, setup)[0]
            return _run_kernel("backproject_adjoint", backend, upstream, setup)

        return values, gradient

    return backprojection(sinogram)
