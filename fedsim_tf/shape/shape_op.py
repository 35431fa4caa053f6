"""Shape parameters -> label map, as a TensorFlow op with finite-difference gradients.

The shape parameter vector of one sample (paper Sec. 2.1, ``tau_S`` in R^21 for 14 modes) has the
layout of :mod:`fedsim_tf.shape.parameters`: ``n_modes`` SSM weights, then the 7 pose parameters.

Voxelisation is not differentiable, so (paper Sec. 2.2) the gradient of the binary heart mask
is taken by central finite differences on the low-dimensional parameters:
``d mask / d p_i ~ (mask(p + h_i e_i) - mask(p - h_i e_i)) / (2 h_i)``, and the backward pass
returns the vector-Jacobian product ``sum_voxels(upstream * d mask / d p_i)``. The ``2 P``
perturbed shapes of a sample are instanced in one vectorised SSM call and voxelised only when a
gradient is requested.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import tensorflow as tf

from fedsim_tf.anatomy import NUM_STRUCTURES
from fedsim_tf.grid import Grid
from fedsim_tf.shape.mesh import HeartMesh
from fedsim_tf.shape.parameters import FiniteDifferenceSteps, num_shape_params
from fedsim_tf.shape.pose import pose_points
from fedsim_tf.shape.voxelize import heart_mask, voxelize


class ShapeModel(Protocol):
    """What the op needs from a statistical shape model (see :mod:`fedsim_tf.shape.ssm`)."""

    @property
    def mean(self) -> HeartMesh:
        """The mean heart (its topology and centre are used)."""

    @property
    def stddevs(self) -> np.ndarray:
        """``(n_modes,)`` standard deviation of each mode."""

    def instance_vertices(self, weights: np.ndarray) -> np.ndarray:
        """``[M, n_modes]`` weights in std units -> ``[M, sum V, 3]`` vertices in world mm."""


class ShapeRenderer:
    """Maps shape parameter vectors to label maps and heart masks on a fixed grid (NumPy side).

    Args:
        ssm: the statistical shape model (mean, stddevs, vectorised ``instance_vertices``).
        grid: the output voxel grid.
        steps: finite-difference steps for the gradient.
    """

    def __init__(self, ssm: ShapeModel, grid: Grid, steps: FiniteDifferenceSteps = FiniteDifferenceSteps()) -> None:
        self.ssm = ssm
        self.grid = grid
        self.n_modes = int(np.asarray(ssm.stddevs).shape[0])
        self.num_params = num_shape_params(self.n_modes)
        self.centre = ssm.mean.centre()
        self.steps = steps.vector(self.n_modes, grid)

    def _check(self, params: np.ndarray) -> np.ndarray:
        params = np.asarray(params, dtype=np.float64)
        if params.ndim != 2 or params.shape[1] != self.num_params:
            raise ValueError(
                f"shape params must be [B, {self.num_params}] (n_modes={self.n_modes} + 7 pose), "
                f"got shape {params.shape}"
            )
        if not np.all(np.isfinite(params)):
            raise ValueError("shape params must be finite")
        return params

    def vertices(self, params: np.ndarray) -> np.ndarray:
        """Posed SSM instances.

        Args:
            params: ``[M, P]`` shape parameters (layout in the module docstring).

        Returns:
            ``[M, sum V, 3]`` float64 vertices in world mm, structures in anatomy order.
        """
        params = self._check(params)
        shapes = np.asarray(self.ssm.instance_vertices(params[:, : self.n_modes]), dtype=np.float64)
        return pose_points(shapes, params[:, self.n_modes :], self.centre)

    def hearts(self, params: np.ndarray) -> list[HeartMesh]:
        """``[M, P]`` shape parameters -> ``M`` posed heart meshes."""
        return [self.ssm.mean.with_stacked_vertices(v) for v in self.vertices(params)]

    def labels(self, params: np.ndarray) -> np.ndarray:
        """``[B, P]`` shape parameters -> ``[B, Z, Y, X]`` uint8 label maps (0 background, 1..7)."""
        return np.stack([voxelize(h, self.grid) for h in self.hearts(params)])

    def mask_vjp(self, params: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        """Finite-difference vector-Jacobian product of the binary heart mask.

        Args:
            params: ``[B, P]`` shape parameters.
            upstream: ``[B, Z, Y, X]`` gradient of a scalar loss w.r.t. the float mask.

        Returns:
            ``[B, P]`` float64 ``sum_voxels(upstream * (mask(p + h_i e_i) - mask(p - h_i e_i)))
            / (2 h_i)``.
        """
        params = self._check(params)
        upstream = np.asarray(upstream, dtype=np.float64)
        if upstream.shape != (len(params),) + self.grid.shape:
            raise ValueError(
                f"upstream gradient must be [B, Z, Y, X] = {(len(params),) + self.grid.shape}, "
                f"got {upstream.shape}"
            )
        return self._central_differences(params, lambda heart, b: upstream[b][heart_mask(heart, self.grid)].sum())

    def one_hot_vjp(self, params: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        """Finite-difference vector-Jacobian product of the one-hot label map.

        Args:
            params: ``[B, P]`` shape parameters.
            upstream: ``[B, Z, Y, X, 8]`` gradient of a scalar loss w.r.t. the float one-hot map
                (channel ``c`` = label ``c``, 0 background).

        Returns:
            ``[B, P]`` float64 ``sum(upstream * (onehot(p + h_i e_i) - onehot(p - h_i e_i))) / (2 h_i)``.
        """
        params = self._check(params)
        upstream = np.asarray(upstream, dtype=np.float64)
        if upstream.shape != (len(params),) + self.grid.shape + (NUM_STRUCTURES + 1,):
            raise ValueError(f"upstream gradient must be [B, Z, Y, X, {NUM_STRUCTURES + 1}] = "
                             f"{(len(params),) + self.grid.shape + (NUM_STRUCTURES + 1,)}, got {upstream.shape}")
        return self._central_differences(params, lambda heart, b: np.take_along_axis(
            upstream[b], voxelize(heart, self.grid)[..., None].astype(np.intp), axis=-1).sum())

    def _central_differences(self, params: np.ndarray, total: Callable[[HeartMesh, int], float]) -> np.ndarray:
        """``[B, P]``: ``(total(p + h_i e_i) - total(p - h_i e_i)) / (2 h_i)`` of each sample ``b``, where
        ``total(heart, b)`` is a scalar of the voxelised heart."""
        offsets = np.concatenate([np.diag(self.steps), -np.diag(self.steps)])  # [2P, P]
        grads = np.empty(params.shape)
        for b in range(len(params)):
            totals = np.array([total(heart, b) for heart in self.hearts(params[b] + offsets)])
            grads[b] = (totals[: self.num_params] - totals[self.num_params :]) / (2.0 * self.steps)
        return grads


def _with_finite_differences(
    params: tf.Tensor, value: tf.Tensor, vjp: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> tf.Tensor:
    """``value`` (a function of ``params`` computed without gradient) with the gradient ``vjp(params,
    upstream)`` (a NumPy finite-difference vector-Jacobian product, ``[B, P]`` float64)."""

    @tf.custom_gradient
    def _op(p: tf.Tensor) -> tuple[tf.Tensor, object]:
        def _grad(upstream: tf.Tensor) -> tf.Tensor:
            g = tf.numpy_function(vjp, [p, upstream], tf.float64, stateful=False)
            g.set_shape(p.shape)
            return tf.cast(g, p.dtype)

        return value, _grad

    return _op(params)


def _labels(params: tf.Tensor, renderer: ShapeRenderer) -> tuple[tf.Tensor, tf.Tensor]:
    """``(float params [B, P], uint8 labels [B, Z, Y, X])``, checked."""
    params = tf.convert_to_tensor(params)
    if not params.dtype.is_floating:
        params = tf.cast(params, tf.float32)
    if params.shape.rank != 2 or params.shape[1] != renderer.num_params:
        raise ValueError(
            f"render_shapes params must be [B, {renderer.num_params}], got shape {params.shape}"
        )
    labels = tf.numpy_function(renderer.labels, [params], tf.uint8, stateful=False)
    labels.set_shape([params.shape[0], *renderer.grid.shape])
    return params, labels


def render_shapes(params: tf.Tensor, renderer: ShapeRenderer) -> tuple[tf.Tensor, tf.Tensor]:
    """Render a batch of shape parameter vectors (usable eagerly and inside ``tf.function``).

    Args:
        params: ``[B, P]`` float shape parameters, ``P = n_modes + 7`` (layout in the module
            docstring).
        renderer: the SSM, grid and finite-difference steps.

    Returns:
        ``labels``: ``[B, Z, Y, X]`` int32 label maps (0 background, 1..7 anatomy indices), no
        gradient; ``mask``: ``[B, Z, Y, X]`` float32 binary heart mask (``labels > 0``) whose
        gradient w.r.t. ``params`` is the central finite difference described above.
    """
    params, labels = _labels(params, renderer)
    mask = _with_finite_differences(params, tf.cast(labels > 0, tf.float32), renderer.mask_vjp)
    return tf.cast(labels, tf.int32), mask


def render_one_hot(params: tf.Tensor, renderer: ShapeRenderer) -> tf.Tensor:
    """One-hot label maps of a batch of shape parameter vectors, differentiable by finite differences.

    Args:
        params: ``[B, P]`` float shape parameters.
        renderer: the SSM, grid and finite-difference steps.

    Returns:
        ``[B, Z, Y, X, 8]`` float32 one-hot labels (channel 0 background, 1..7 the anatomy indices); the
        gradient w.r.t. ``params`` is the central finite difference of :meth:`ShapeRenderer.one_hot_vjp`.
        The semi-supervised stage trains ``G_S`` through it (the GAN is conditioned on these maps).
    """
    params, labels = _labels(params, renderer)
    one_hot = tf.one_hot(tf.cast(labels, tf.int32), NUM_STRUCTURES + 1, dtype=tf.float32)
    return _with_finite_differences(params, one_hot, renderer.one_hot_vjp)
