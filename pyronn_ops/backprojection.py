"""Voxel-driven bilinear FDK-weighted cone-beam back-projector (TensorFlow kernels) and its transpose.

Work is split into z-slabs of ``cz`` slices times chunks of ``cv`` views, both divisors of the
volume depth and the view count, so that ``B * cv * cz * Y * X`` stays within the chunk budget.
The homogeneous detector coordinates ``P (X, 1)`` are separable over x, y and z: each row of P
is evaluated once per axis in float64 and summed per voxel in float32.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import tensorflow as tf

from pyronn_ops.interpolation import corner_base, corner_offsets, corner_weights, crop_padding
from pyronn_ops.interpolation import interpolate, padded_flat, padded_shape, scatter_corners
from pyronn_ops.operator_setup import ConeSetup, per_batch


class _AxisTerms(NamedTuple):
    """Per-axis contributions to the rows (a, b, w) of ``P (X, 1)``, float32."""

    x: tf.Tensor  # [3, B, N, X], includes P[:, 3]
    y: tf.Tensor  # [3, B, N, Y]
    z: tf.Tensor  # [3, B, N, Z]


class _VoxelSamples(NamedTuple):
    """Detector samples of one slab x view chunk, shapes ``[B, cv, cz, Y, X]``."""

    base: tf.Tensor  # int32 flat padded index of the lower corner (batch and view offsets included)
    weights: list[tf.Tensor]  # 4 bilinear corner weights
    inverse_w2: tf.Tensor  # 1 / w**2, 1/mm^2


def _largest_divisor(n: int, limit: int) -> int:
    return max(d for d in range(1, n + 1) if n % d == 0 and d <= max(1, limit))


def work_split(setup: ConeSetup, batch: int | None) -> tuple[int, int]:
    """``(cz, cv)``: slab depth and views per chunk within ``setup.chunk_elements``."""
    depth, height, width = setup.volume_shape
    plane = (batch or 1) * height * width
    slab = _largest_divisor(depth, setup.chunk_elements // plane)
    views = _largest_divisor(setup.sinogram_shape[0], setup.chunk_elements // (plane * slab)) if slab == depth else 1
    return slab, views


def _axis_terms(setup: ConeSetup, batch: tf.Tensor) -> _AxisTerms:
    matrices = per_batch(setup.matrices, batch)  # [B, N, 3, 4]
    origin = per_batch(setup.origin_xyz, batch)
    spacing = per_batch(setup.spacing_xyz, batch)
    terms = []
    for axis, size in enumerate(setup.volume_shape[::-1]):  # x, y, z
        coordinate = origin[:, axis : axis + 1] + tf.range(size, dtype=tf.float64)[None, :] * spacing[:, axis : axis + 1]
        term = matrices[..., axis, None] * coordinate[:, None, None, :]  # [B, N, 3, n]
        if axis == 0:
            term += matrices[..., 3, None]
        terms.append(tf.cast(tf.transpose(term, [2, 0, 1, 3]), tf.float32))
    return _AxisTerms(*terms)


def _voxel_samples(setup: ConeSetup, terms: _AxisTerms, slab: tf.Tensor, chunk: tf.Tensor, cz: int, cv: int) -> _VoxelSamples:
    n_views, height, width = setup.sinogram_shape
    views = chunk * cv + tf.range(cv)
    slices = slab * cz + tf.range(cz)
    x = tf.gather(terms.x, views, axis=2)[:, :, :, None, None, :]
    y = tf.gather(terms.y, views, axis=2)[:, :, :, None, :, None]
    z = tf.gather(tf.gather(terms.z, views, axis=2), slices, axis=3)[..., None, None]
    a, b, w = tf.unstack(x + y + z)  # each [B, cv, cz, Y, X]
    inverse_w = 1.0 / w
    base, fractions = corner_base([b * inverse_w, a * inverse_w], (height, width))
    batch = tf.shape(a)[0]
    view_index = tf.range(batch)[:, None] * n_views + views[None, :]  # [B, cv]
    base = base + (view_index * math.prod(padded_shape((height, width))))[:, :, None, None, None]
    return _VoxelSamples(base=base, weights=corner_weights(fractions), inverse_w2=inverse_w * inverse_w)


def backproject(sinogram: tf.Tensor, setup: ConeSetup) -> tf.Tensor:
    """FDK-weighted back-projection: ``sum_p bilinear(view_p, a/w, b/w) / w**2 * projection_multiplier``.

    Args:
        sinogram: ``[B, N, H, W]`` float32.
        setup: resolved geometry (:func:`pyronn_ops.operator_setup.resolve_setup`).

    Returns:
        ``[B, Z, Y, X]`` float32.
    """
    batch = tf.shape(sinogram)[0]
    depth, height, width = setup.volume_shape
    cz, cv = work_split(setup, sinogram.shape[0])
    flat = padded_flat(sinogram, 2)
    offsets = corner_offsets(setup.sinogram_shape[1:])
    terms = _axis_terms(setup, batch)

    def slab_body(slab: tf.Tensor, slabs: tf.TensorArray):
        def view_body(chunk: tf.Tensor, accumulated: tf.Tensor):
            samples = _voxel_samples(setup, terms, slab, chunk, cz, cv)
            q = interpolate(flat, samples.base, samples.weights, offsets)
            return chunk + 1, accumulated + tf.reduce_sum(q * samples.inverse_w2, axis=1)

        _, accumulated = tf.while_loop(
            lambda chunk, _: chunk < setup.sinogram_shape[0] // cv,
            view_body,
            (tf.constant(0), tf.zeros(tf.stack([batch, cz, height, width]))),
            parallel_iterations=1,
        )
        return slab + 1, slabs.write(slab, accumulated)

    _, slabs = tf.while_loop(
        lambda slab, _: slab < depth // cz,
        slab_body,
        (tf.constant(0), tf.TensorArray(tf.float32, size=depth // cz)),
        parallel_iterations=1,
    )
    volume = tf.reshape(tf.transpose(slabs.stack(), [1, 0, 2, 3, 4]), tf.stack([batch, depth, height, width]))
    multiplier = tf.cast(per_batch(setup.multiplier, batch), tf.float32)
    return volume * multiplier[:, None, None, None]


def backproject_adjoint(volume: tf.Tensor, setup: ConeSetup) -> tf.Tensor:
    """Exact transpose of :func:`backproject`.

    Args:
        volume: ``[B, Z, Y, X]`` float32.
        setup: the same setup as the forward call.

    Returns:
        ``[B, N, H, W]`` float32.
    """
    batch = tf.shape(volume)[0]
    depth = setup.volume_shape[0]
    n_views, height, width = setup.sinogram_shape
    cz, cv = work_split(setup, volume.shape[0])
    terms = _axis_terms(setup, batch)
    multiplier = tf.cast(per_batch(setup.multiplier, batch), tf.float32)
    weighted = volume * multiplier[:, None, None, None]
    size = batch * n_views * math.prod(padded_shape((height, width)))
    offsets = corner_offsets((height, width))

    def body(item: tf.Tensor, accumulated: tf.Tensor):
        slab, chunk = item // (n_views // cv), item % (n_views // cv)
        samples = _voxel_samples(setup, terms, slab, chunk, cz, cv)
        upstream = tf.gather(weighted, slab * cz + tf.range(cz), axis=1)[:, None] * samples.inverse_w2
        values = tf.stack([upstream * weight for weight in samples.weights], axis=-1)
        return item + 1, accumulated + scatter_corners(values, samples.base, offsets, size)

    _, accumulated = tf.while_loop(
        lambda item, _: item < (depth // cz) * (n_views // cv),
        body,
        (tf.constant(0), tf.zeros([size])),
        parallel_iterations=1,
    )
    return crop_padding(accumulated, tf.stack([batch, n_views]), (height, width))
