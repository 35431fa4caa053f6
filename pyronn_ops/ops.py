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

Speed: the kernels are plain TensorFlow ops. On CPU, wrap calls in ``tf.function(jit_compile=True)``
so XLA fuses them (about 15x faster than eager; see ``bench/projector.py``).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from pyronn_ops.backprojection import backproject, backproject_adjoint
from pyronn_ops.operator_setup import DEFAULT_CHUNK_ELEMENTS, GeometryArg, check_input, resolve_setup
from pyronn_ops.projection import project, project_adjoint

GRAD_MODES = ("pyronn", "adjoint")
BACKENDS = ("tf",)


def _check_modes(grad_mode: str, backend: str) -> None:
    if grad_mode not in GRAD_MODES:
        raise ValueError(f"grad_mode must be one of {GRAD_MODES}, got {grad_mode!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def cone_projection3d(
    volume: tf.Tensor,
    geometry: GeometryArg,
    hardware_interp: bool = True,
    step_size: float | None = None,
    grad_mode: str = "pyronn",
    *,
    projection_matrices: tf.Tensor | np.ndarray | None = None,
    end_correction_rule: bool = True,
    backend: str = "tf",
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
        backend: kernel implementation; ``"tf"`` (pure TensorFlow ops, CPU/GPU, XLA-compilable).
        chunk_elements: ray samples processed per chunk; bounds the working memory.

    Returns:
        ``[B, N, H, W]`` float32 line integrals in value * mm.

    Raises:
        ValueError: bad rank or shape of ``volume``, bad geometry, ``grad_mode`` or ``backend``.
    """
    _check_modes(grad_mode, backend)
    setup = resolve_setup(geometry, step_size, hardware_interp, end_correction_rule, projection_matrices, chunk_elements)
    volume = check_input("volume", volume, setup.volume_shape, setup.groups)

    @tf.custom_gradient
    def projection(x: tf.Tensor):
        # stop_gradient: the kernel's while loops must not record intermediates for autodiff
        values, applied = project(tf.stop_gradient(x), setup)

        def gradient(upstream: tf.Tensor) -> tf.Tensor:
            if grad_mode == "pyronn":
                return backproject(tf.stop_gradient(upstream), setup)
            return project_adjoint(tf.stop_gradient(upstream), setup, applied)

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
    backend: str = "tf",
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
        backend: kernel implementation; ``"tf"``.
        chunk_elements: voxel-view pairs processed per chunk; bounds the working memory.

    Returns:
        ``[B, Z, Y, X]`` float32.

    Raises:
        ValueError: bad rank or shape of ``sinogram``, bad geometry, ``grad_mode`` or ``backend``.
    """
    _check_modes(grad_mode, backend)
    setup = resolve_setup(geometry, step_size, hardware_interp, end_correction_rule, projection_matrices, chunk_elements)
    sinogram = check_input("sinogram", sinogram, setup.sinogram_shape, setup.groups)

    @tf.custom_gradient
    def backprojection(y: tf.Tensor):
        values = backproject(tf.stop_gradient(y), setup)

        def gradient(upstream: tf.Tensor) -> tf.Tensor:
            if grad_mode == "pyronn":
                return project(tf.stop_gradient(upstream), setup)[0]
            return backproject_adjoint(tf.stop_gradient(upstream), setup)

        return values, gradient

    return backprojection(sinogram)
