"""Turn the user's geometry argument into the batched tensors the operator kernels consume.

The ops accept, as ``geometry``:

* one :class:`GeometryCone3D` (every batch element uses the same scanner), or
* a list/tuple of ``B`` geometries with equal ``volume_shape``, ``detector_shape`` and
  ``number_of_projections`` (one scanner per batch element: own spacing, origin, matrices,
  step size and projection multiplier).

Independently, ``projection_matrices`` may override the matrices with a tensor ``(N, 3, 4)``
(shared) or ``(B, N, 3, 4)`` (per batch element), e.g. a trajectory produced inside a graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import tensorflow as tf

from pyronn_ops.geometry import GeometryCone3D

GeometryArg = Union[GeometryCone3D, Sequence[GeometryCone3D]]
DEFAULT_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class ConeSetup:
    """Everything a kernel needs, geometry values as float64 tensors with a leading group axis G
    (G = 1: shared by the batch; G = B: one per batch element).

    Attributes:
        volume_shape: ``(Z, Y, X)`` voxels.
        sinogram_shape: ``(N, H, W)``.
        matrices: ``[G, N, 3, 4]`` world mm -> homogeneous pixel indices.
        origin_xyz: ``[G, 3]`` centre of voxel (0, 0, 0), (x, y, z) mm.
        spacing_xyz: ``[G, 3]`` voxel size, (x, y, z) mm.
        step: ``[G]`` sampling step, voxel-index units.
        multiplier: ``[G]`` back-projection ``projection_multiplier``.
        min_step: smallest step (python float), sizes the static per-ray sample count.
        groups: G.
        hardware_interp: clip box ``[-0.5, n-0.5]`` (True) or ``[0, n]`` (False).
        end_correction_rule: end correction only where the ray sum is > 0.
        chunk_elements: work-array size bound (samples or voxel-view pairs per chunk).
        known_sources: ``[G, N, 3]`` float64 NumPy source positions in (x, y, z) voxel-index units
            when the matrices are known before execution (not a tensor argument), else None.
        slots: static sample slots K per ray (python int): enough for the longest chord (from
            ``known_sources`` when known, else the box diagonal) at ``min_step``. Static, so it
            keys the compiled-kernel cache; the tensors above do not.
    """

    volume_shape: tuple[int, int, int]
    sinogram_shape: tuple[int, int, int]
    matrices: tf.Tensor
    origin_xyz: tf.Tensor
    spacing_xyz: tf.Tensor
    step: tf.Tensor
    multiplier: tf.Tensor
    min_step: float
    groups: int
    hardware_interp: bool
    end_correction_rule: bool
    chunk_elements: int
    known_sources: np.ndarray | None
    slots: int

    def static_key(self) -> tuple:
        """Hashable static configuration: everything that fixes the kernels' shapes and code
        (shapes, groups, clip box, end-correction rule, chunking, K), none of the geometry values."""
        return (
            self.volume_shape,
            self.sinogram_shape,
            self.groups,
            self.hardware_interp,
            self.end_correction_rule,
            self.chunk_elements,
            self.slots,
        )


def longest_chord(volume_shape: tuple[int, int, int], hardware_interp: bool, known_sources: np.ndarray | None) -> float:
    """Upper bound of any ray's chord through the clip box, voxel-index units.

    The box diagonal in general; with known source positions ``[G, N, 3]`` (x, y, z index units),
    also ``max over views of (distance from the source to the farthest box corner - distance to
    the box)``, valid when the source is outside the box (two points of one ray from the source
    differ by at most that much).
    """
    shape_xyz = np.asarray(volume_shape[::-1], dtype=np.float64)
    low = np.full(3, -0.5) if hardware_interp else np.zeros(3)
    high = low + shape_xyz
    bound = float(np.linalg.norm(shape_xyz))
    if known_sources is None:
        return bound
    corners = np.stack(np.meshgrid(*zip(low, high), indexing="ij"), axis=-1).reshape(-1, 3)
    farthest = np.linalg.norm(known_sources[..., None, :] - corners, axis=-1).max(axis=-1)
    nearest = np.linalg.norm(known_sources - np.clip(known_sources, low, high), axis=-1)
    if np.all(nearest > 0):
        bound = min(bound, float(np.max(farthest - nearest)))
    return bound


def resolve_setup(
    geometry: GeometryArg,
    step_size: float | None,
    hardware_interp: bool,
    end_correction_rule: bool,
    projection_matrices: tf.Tensor | np.ndarray | None,
    chunk_elements: int,
) -> ConeSetup:
    """Validate the geometry arguments and build a :class:`ConeSetup`.

    Raises:
        ValueError: wrong geometry type, mismatched list entries, bad ``step_size``,
            ``projection_matrices`` of the wrong shape, non-positive ``chunk_elements``.
    """
    geometries = list(geometry) if isinstance(geometry, (list, tuple)) else [geometry]
    if not geometries or not all(isinstance(g, GeometryCone3D) for g in geometries):
        raise ValueError(f"geometry must be a GeometryCone3D or a non-empty list of them, got {type(geometry).__name__}")
    first = geometries[0]
    for g in geometries[1:]:
        if g.volume_shape != first.volume_shape or g.sinogram_shape != first.sinogram_shape:
            raise ValueError("geometry list entries must share volume_shape, detector_shape and number_of_projections")
    if step_size is not None and (not math.isfinite(float(step_size)) or float(step_size) <= 0):
        raise ValueError(f"step_size must be positive and finite, got {step_size}")
    if int(chunk_elements) <= 0:
        raise ValueError(f"chunk_elements must be positive, got {chunk_elements}")
    steps = [g.step_size if step_size is None else float(step_size) for g in geometries]

    origin = np.stack([g.volume_origin[::-1] for g in geometries])
    spacing = np.stack([g.volume_spacing[::-1] for g in geometries])
    known_sources = None
    if projection_matrices is None:
        known = np.stack([g.require_trajectory() for g in geometries])
        sources_mm = -np.linalg.solve(known[..., :3], known[..., 3:])[..., 0]
        known_sources = (sources_mm - origin[:, None, :]) / spacing[:, None, :]
        matrices = tf.constant(known, tf.float64)
    else:
        matrices = tf.stop_gradient(tf.cast(tf.convert_to_tensor(projection_matrices), tf.float64))  # not differentiated
        if tf.executing_eagerly() and not np.all(np.isfinite(matrices.numpy())):  # symbolic values: unchecked
            raise ValueError("projection_matrices must be finite")
        expected = first.number_of_projections
        if matrices.shape.rank == 3:
            matrices = matrices[None]
        if matrices.shape.rank != 4 or tuple(matrices.shape[1:]) != (expected, 3, 4):
            raise ValueError(
                f"projection_matrices must have shape ({expected}, 3, 4) or (B, {expected}, 3, 4), got {matrices.shape}"
            )
        if len(geometries) > 1 and matrices.shape[0] not in (1, len(geometries)):
            raise ValueError(
                f"projection_matrices batch ({matrices.shape[0]}) does not match the geometry list ({len(geometries)})"
            )
    groups = max(len(geometries), int(matrices.shape[0]) if matrices.shape[0] is not None else 1)
    return ConeSetup(
        volume_shape=first.volume_shape,
        sinogram_shape=first.sinogram_shape,
        matrices=matrices,
        origin_xyz=tf.constant(origin, tf.float64),
        spacing_xyz=tf.constant(spacing, tf.float64),
        step=tf.constant(steps, tf.float64),
        multiplier=tf.constant([g.projection_multiplier for g in geometries], tf.float64),
        min_step=min(steps),
        groups=groups,
        hardware_interp=bool(hardware_interp),
        end_correction_rule=bool(end_correction_rule),
        chunk_elements=int(chunk_elements),
        known_sources=known_sources,
        slots=int(math.ceil(longest_chord(first.volume_shape, bool(hardware_interp), known_sources) / min(steps))) + 1,
    )


def per_batch(values: tf.Tensor, batch: tf.Tensor) -> tf.Tensor:
    """Broadcast a ``[G, ...]`` setup tensor (G = 1 or B) to ``[B, ...]``."""
    return tf.broadcast_to(values, tf.concat([[batch], tf.shape(values)[1:]], axis=0))


def check_input(name: str, tensor: tf.Tensor, expected: tuple[int, ...], groups: int) -> tf.Tensor:
    """Check ``tensor`` is ``[B, *expected]`` and, for per-sample geometry, ``B == groups``.

    Raises:
        ValueError: wrong rank, trailing shape or batch size, naming ``name``.
    """
    tensor = tf.convert_to_tensor(tensor)
    if not tensor.dtype.is_floating:
        raise ValueError(f"{name} must be a floating-point tensor, got {tensor.dtype.name}")
    tensor = tf.cast(tensor, tf.float32)
    if tensor.shape.rank != len(expected) + 1:
        raise ValueError(f"{name} must have rank {len(expected) + 1} [B, {', '.join(map(str, expected))}], got shape {tensor.shape}")
    if tuple(tensor.shape[1:]) != expected:
        raise ValueError(f"{name} shape {tuple(tensor.shape)} does not match the geometry: expected [B, {', '.join(map(str, expected))}]")
    if groups > 1 and tensor.shape[0] is not None and tensor.shape[0] != groups:
        raise ValueError(f"{name} batch size {tensor.shape[0]} does not match the {groups} per-sample geometries")
    return tensor
