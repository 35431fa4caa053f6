"""Ray-driven trilinear cone-beam projector (TensorFlow kernels) and its exact transpose.

Rays of all batch elements, views and pixels are enumerated in ``[B, N, H, W]`` C order and
processed in chunks of ``R`` rays; every ray gets a static number ``K`` of sample slots (masked
beyond its exit point); the end correction interpolates two more points per ray (the last sample
and the exit point) separately, so the big ``[R, K]`` sample array feeds a single reduction (XLA
then fuses gathers, weights and sum; reusing it twice measured 6x slower). Ray set-up (source,
direction, clipping) runs in float64, sampling in float32 relative to the entry point.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import tensorflow as tf

from pyronn_ops.interpolation import corner_base, corner_offsets, corner_weights, crop_padding
from pyronn_ops.interpolation import interpolate, padded_flat, padded_shape, scatter_corners
from pyronn_ops.operator_setup import ConeSetup, per_batch


class _RayFrame(NamedTuple):
    """Per-view quantities of a batch, flattened over ``[B * N]`` (float64)."""

    inverse: tf.Tensor  # [B*N, 3, 3] inverse of P[:, :3]
    source: tf.Tensor  # [B*N, 3] source position, (x, y, z) voxel-index units
    spacing: tf.Tensor  # [B, 3] voxel size (x, y, z) mm
    step: tf.Tensor  # [B] float32 sampling step, index units


class _Points(NamedTuple):
    """Trilinear access data of a set of points in the padded flat volume."""

    base: tf.Tensor  # int32 flat padded index of the lower corner (batch offset included)
    weights: list[tf.Tensor]  # 8 trilinear corner weights, each shaped like base


class _RaySamples(NamedTuple):
    """One chunk of ``R`` rays: ``K`` sample slots per ray (masked beyond the exit) and two end
    points per ray (the last sample and the exit point) for the end correction."""

    samples: _Points  # [R, K]
    plain: tf.Tensor  # [R, K] quadrature coefficients without end correction (index units)
    ends: _Points  # [R, 2]: last sample, exit point
    correction: tf.Tensor  # [R, 2] coefficients the end correction adds at the two end points
    has_samples: tf.Tensor  # [R] bool, at least one sample
    mm_per_index: tf.Tensor  # [R] float32 ||d * spacing||
    ray_ids: tf.Tensor  # [R] int32 flat ray index, clamped to the last ray
    real: tf.Tensor  # [R] bool, ray index < total (false for the padding of the last chunk)


def samples_per_ray(setup: ConeSetup) -> int:
    """Static sample slots K per ray: enough for the longest chord at the smallest step
    (``setup.slots``, computed by :func:`pyronn_ops.operator_setup.resolve_setup`)."""
    return setup.slots


def _rays_per_chunk(setup: ConeSetup, total_rays: int | None) -> int:
    rays = max(1, setup.chunk_elements // (samples_per_ray(setup) + 2))
    return rays if total_rays is None else min(rays, total_rays)


def _ray_frame(setup: ConeSetup, batch: tf.Tensor) -> _RayFrame:
    matrices = per_batch(setup.matrices, batch)  # [B, N, 3, 4]
    inverse = tf.linalg.inv(matrices[..., :3])
    source_mm = -tf.linalg.matvec(inverse, matrices[..., 3])
    origin = per_batch(setup.origin_xyz, batch)[:, None, :]
    spacing = per_batch(setup.spacing_xyz, batch)
    source = (source_mm - origin) / spacing[:, None, :]
    return _RayFrame(
        inverse=tf.reshape(inverse, [-1, 3, 3]),
        source=tf.reshape(source, [-1, 3]),
        spacing=spacing,
        step=tf.cast(per_batch(setup.step, batch), tf.float32),
    )


class _RayClip(NamedTuple):
    """Steps 1-3 for a set of ``R`` rays (float64 set-up)."""

    direction: tf.Tensor  # [R, 3] unit direction, (x, y, z) index units
    hit: tf.Tensor  # [R] bool, the line crosses the clip box (and the ray is real)
    chord: tf.Tensor  # [R] float32 alpha_out - alpha_in (0 where no hit), index units
    entry: tf.Tensor  # [R, 3] float32 entry point (x, y, z) index units
    mm_per_index: tf.Tensor  # [R] float64 ||d * spacing||
    batch_index: tf.Tensor  # [R] int32


def _clip_rays(setup: ConeSetup, frame: _RayFrame, ray_ids: tf.Tensor, real: tf.Tensor) -> _RayClip:
    """Steps 1-3 for the flat ray indices ``ray_ids`` ``[R]`` (``real``: False for padding)."""
    n_views, height, width = setup.sinogram_shape
    shape_zyx = setup.volume_shape
    rays = tf.shape(ray_ids)[0]
    view = ray_ids // (height * width)  # index into [B*N]
    pixel = ray_ids % (height * width)
    batch_index = view // n_views
    uv1 = tf.stack(
        [tf.cast(pixel % width, tf.float64), tf.cast(pixel // width, tf.float64), tf.ones([rays], tf.float64)], axis=1
    )
    direction_mm = tf.linalg.matvec(tf.gather(frame.inverse, view), uv1)
    direction = direction_mm / tf.gather(frame.spacing, batch_index)
    norm = tf.norm(direction, axis=1)
    direction = direction / norm[:, None]
    mm_per_index = tf.norm(direction_mm, axis=1) / norm
    start = tf.gather(frame.source, view)

    size_xyz = tf.constant([float(n) for n in shape_zyx[::-1]], tf.float64)
    low = tf.constant([-0.5 if setup.hardware_interp else 0.0] * 3, tf.float64)
    high = size_xyz - 0.5 if setup.hardware_interp else size_xyz
    parallel = tf.equal(direction, 0.0)
    safe = tf.where(parallel, tf.ones_like(direction), direction)
    t_low, t_high = (low - start) / safe, (high - start) / safe
    inside = (start >= low) & (start <= high)
    infinity = tf.constant(math.inf, tf.float64)
    enter = tf.where(parallel, tf.where(inside, -infinity, infinity), tf.minimum(t_low, t_high))
    leave = tf.where(parallel, tf.where(inside, infinity, -infinity), tf.maximum(t_low, t_high))
    alpha_in = tf.reduce_max(enter, axis=1)
    alpha_out = tf.reduce_min(leave, axis=1)
    hit = (alpha_in < alpha_out) & real
    chord = tf.cast(tf.where(hit, alpha_out - alpha_in, 0.0), tf.float32)
    entry = tf.cast(tf.where(hit[:, None], start + tf.where(hit, alpha_in, 0.0)[:, None] * direction, 0.0), tf.float32)
    return _RayClip(direction, hit, chord, entry, mm_per_index, batch_index)


def _sample_count(setup: ConeSetup, frame: _RayFrame, ray_ids: tf.Tensor, real: tf.Tensor) -> tf.Tensor:
    """``[R]`` int32 number of samples of each ray (step 4: ``#{k: step*(k+1/2) < chord}``);
    may differ by one from :func:`_ray_samples`' mask through rounding (callers add a margin)."""
    clip = _clip_rays(setup, frame, ray_ids, real)
    step = tf.gather(frame.step, clip.batch_index)
    count = tf.math.ceil(clip.chord / step - 0.5)
    return tf.cast(tf.clip_by_value(count, 0.0, float(samples_per_ray(setup))), tf.int32)


def _ray_samples(setup: ConeSetup, frame: _RayFrame, ray_ids: tf.Tensor, real: tf.Tensor, slots: int) -> _RaySamples:
    """Steps 1-4 and the quadrature coefficients of steps 6-8 for the rays ``ray_ids`` ``[R]``
    with ``slots`` sample slots each (``real``: False for the padding of the last chunk)."""
    shape_zyx = setup.volume_shape
    clip = _clip_rays(setup, frame, ray_ids, real)
    direction, chord, entry, mm_per_index, batch_index = clip.direction, clip.chord, clip.entry, clip.mm_per_index, clip.batch_index
    step = tf.gather(frame.step, batch_index)[:, None]  # [R, 1]
    slot = tf.range(slots, dtype=tf.float32)[None, :]
    distances = step * (slot + 0.5)  # alpha_k - alpha_in
    sampled = distances < chord[:, None]
    count = tf.reduce_sum(tf.cast(sampled, tf.int32), axis=1)
    has_samples = count > 0
    last = step[:, 0] * (tf.cast(count, tf.float32) - 0.5)  # alpha_{K-1} - alpha_in
    last_length = chord - last
    direction32 = tf.cast(direction, tf.float32)
    batch_offset = batch_index * math.prod(padded_shape(shape_zyx))

    def locate(along: tf.Tensor) -> _Points:
        points = [entry[:, axis, None] + along * direction32[:, axis, None] for axis in (2, 1, 0)]  # z, y, x
        base, fractions = corner_base(points, shape_zyx)
        return _Points(base + batch_offset[:, None], corner_weights(fractions))

    plain = tf.where(sampled, step * tf.where(tf.equal(slot, 0.0), 0.5, 1.0), 0.0)
    correction = tf.stack([last_length / 2 - step[:, 0] / 2, last_length / 2], axis=1)
    return _RaySamples(
        samples=locate(distances),
        plain=plain,
        ends=locate(tf.stack([last, chord], axis=1)),
        correction=tf.where(has_samples[:, None], correction, 0.0),
        has_samples=has_samples,
        mm_per_index=tf.cast(mm_per_index, tf.float32),
        ray_ids=ray_ids,
        real=real,
    )


SLOT_BUCKETS = (1.0, 0.75, 0.5, 0.25)


def slot_buckets(setup: ConeSetup) -> tuple[int, ...]:
    """Static per-chunk sample-slot counts (largest first): fractions :data:`SLOT_BUCKETS` of K.

    Each distinct count is one compiled branch of the chunk body; a chunk of rays uses the
    smallest bucket that holds its longest ray (plus one slot of rounding margin)."""
    slots = samples_per_ray(setup)
    return tuple(sorted({max(1, math.ceil(slots * fraction)) for fraction in SLOT_BUCKETS}, reverse=True))


class _RayPlan(NamedTuple):
    """Rays grouped by slot bucket (largest first, original order within a bucket) and cut into
    chunks of ``rays``."""

    order: tf.Tensor  # [chunks * rays] int32 flat ray index per sorted position (clamped padding)
    real: tf.Tensor  # [chunks * rays] bool, position < total
    branch: tf.Tensor  # [chunks] int32 bucket index into slot_buckets(); len(buckets) = no samples
    chunks: tf.Tensor  # int32 scalar
    total: tf.Tensor  # int32 scalar number of rays


def _plan_rays(setup: ConeSetup, frame: _RayFrame, total: tf.Tensor, rays: int) -> _RayPlan:
    """Count every ray's samples (cheap, chunked), group rays by slot bucket and pick each chunk's bucket.

    Rays of similar length then share chunks, so a chunk's static slot count wastes little on
    short rays, and chunks whose rays all miss the volume are skipped. The stable sort by bucket
    (not by exact count) keeps neighbouring rays of a view together: at 128^3 a global sort by
    count mixed all views in every chunk and made the volume gathers ~1.4x slower."""
    chunks = (total + rays - 1) // rays

    def count_body(chunk: tf.Tensor, counts: tf.TensorArray):
        raw = chunk * rays + tf.range(rays)
        real = raw < total
        count = _sample_count(setup, frame, tf.minimum(raw, total - 1), real)
        return chunk + 1, counts.write(chunk, tf.where(real, count, -1))

    _, counts = tf.while_loop(
        lambda chunk, _: chunk < chunks, count_body, (tf.constant(0), tf.TensorArray(tf.int32, size=chunks)),
        parallel_iterations=1,
    )
    counts = tf.reshape(counts.stack(), [-1])  # [chunks * rays], -1 for padding (sorts last)
    sizes = slot_buckets(setup)

    def bucket(need: tf.Tensor) -> tf.Tensor:
        # bucket index: number of bucket sizes that hold need + 1 margin, counted from the largest
        fits = tf.cast(tf.constant(sizes, tf.int32)[None, :] >= need[:, None] + 1, tf.int32)
        index = tf.maximum(tf.reduce_sum(fits, axis=1) - 1, 0)
        return tf.where(need <= 0, len(sizes) + tf.cast(need < 0, tf.int32), index)

    # sort by bucket only (stable): rays keep their view-major pixel order within a bucket, so a
    # chunk walks neighbouring rays of few views (cache-friendly gathers); finer sorting by count
    # cannot reduce work since a chunk's cost is set by its bucket
    order = tf.argsort(bucket(counts), stable=True)
    sorted_counts = tf.gather(counts, order)
    need = tf.reduce_max(tf.reshape(sorted_counts, [-1, rays]), axis=1)  # [chunks]
    branch = tf.minimum(bucket(need), len(sizes))
    real = sorted_counts >= 0
    order = tf.where(real, tf.cast(order, tf.int32), total - 1)
    return _RayPlan(order, real, branch, chunks, total)


def _chunk_rays(plan: _RayPlan, chunk: tf.Tensor, rays: int) -> tuple[tf.Tensor, tf.Tensor]:
    positions = chunk * rays + tf.range(rays)
    return tf.gather(plan.order, positions), tf.gather(plan.real, positions)


def _map_ray_chunks(setup: ConeSetup, batch: tf.Tensor, static_batch: int | None, chunk_fn, empty_fn, dtypes: tuple) -> list:
    """Run ``chunk_fn(samples) -> per-ray tensors [R]`` over the sorted ray chunks (rays that all
    miss: ``empty_fn(rays)``), reassembled to ``[B, N, H, W]``."""
    sinogram_shape = list(setup.sinogram_shape)
    total = batch * math.prod(sinogram_shape)
    rays = _rays_per_chunk(setup, None if static_batch is None else static_batch * math.prod(sinogram_shape))
    frame = _ray_frame(setup, batch)
    plan = _plan_rays(setup, frame, total, rays)
    sizes = slot_buckets(setup)

    def body(chunk: tf.Tensor, *arrays: tf.TensorArray):
        ray_ids, real = _chunk_rays(plan, chunk, rays)
        branches = [
            (lambda slots=slots: tuple(chunk_fn(_ray_samples(setup, frame, ray_ids, real, slots)))) for slots in sizes
        ] + [lambda: tuple(empty_fn(rays))]
        results = tf.switch_case(tf.gather(plan.branch, chunk), branches)
        return (chunk + 1, *(array.write(chunk, result) for array, result in zip(arrays, results)))

    _, *arrays = tf.while_loop(
        lambda chunk, *_: chunk < plan.chunks,
        body,
        (tf.constant(0), *(tf.TensorArray(dtype, size=plan.chunks) for dtype in dtypes)),
        parallel_iterations=1,
    )
    # sorted position -> ray: invert the permutation (padding positions are dropped)
    inverse = tf.math.unsorted_segment_max(
        tf.range(tf.size(plan.order)), tf.where(plan.real, plan.order, total), total + 1
    )[:total]
    out_shape = tf.concat([[batch], sinogram_shape], axis=0)
    return [tf.reshape(tf.gather(tf.reshape(array.stack(), [-1]), inverse), out_shape) for array in arrays]


def project(volume: tf.Tensor, setup: ConeSetup) -> tuple[tf.Tensor, tf.Tensor]:
    """Forward projection (kernel steps 1-8).

    Args:
        volume: ``[B, Z, Y, X]`` float32, value per mm.
        setup: resolved geometry (:func:`pyronn_ops.operator_setup.resolve_setup`).

    Returns:
        ``[B, N, H, W]`` float32 line integrals (value * mm) and ``[B, N, H, W]`` bool: rays that
        received the end correction (the linearisation used by the adjoint).
    """
    flat = padded_flat(volume, 3)
    offsets = corner_offsets(setup.volume_shape)

    def integrate(samples: _RaySamples) -> tuple[tf.Tensor, tf.Tensor]:
        plain_sum = tf.reduce_sum(samples.plain * interpolate(flat, *samples.samples, offsets), axis=1)
        correction = tf.reduce_sum(samples.correction * interpolate(flat, *samples.ends, offsets), axis=1)
        use = samples.has_samples & ((plain_sum > 0) if setup.end_correction_rule else True)
        corrected = plain_sum + tf.where(use, correction, 0.0)
        return corrected * samples.mm_per_index, use

    def empty(rays: int) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.zeros([rays]), tf.zeros([rays], tf.bool)

    values, applied = _map_ray_chunks(
        setup, tf.shape(volume)[0], volume.shape[0], integrate, empty, (tf.float32, tf.bool)
    )
    return values, applied


def sample_counts(setup: ConeSetup, batch: int) -> tf.Tensor:
    """``[B, N, H, W]`` int32 number of samples each ray takes (step 4), e.g. for throughput figures."""

    def count(samples: _RaySamples) -> tuple[tf.Tensor]:
        return (tf.math.count_nonzero(samples.plain, axis=1, dtype=tf.int32),)

    return _map_ray_chunks(setup, tf.constant(batch), batch, count, lambda rays: (tf.zeros([rays], tf.int32),), (tf.int32,))[0]


def project_adjoint(sinogram: tf.Tensor, setup: ConeSetup, applied: tf.Tensor) -> tf.Tensor:
    """Exact transpose of :func:`project` for a fixed end-correction pattern.

    Args:
        sinogram: ``[B, N, H, W]`` float32.
        setup: the same setup as the forward call.
        applied: ``[B, N, H, W]`` bool rays that carry the end correction (from :func:`project`).

    Returns:
        ``[B, Z, Y, X]`` float32.
    """
    batch = tf.shape(sinogram)[0]
    total = batch * math.prod(setup.sinogram_shape)
    static_total = None if sinogram.shape[0] is None else int(sinogram.shape[0]) * math.prod(setup.sinogram_shape)
    rays = _rays_per_chunk(setup, static_total)
    frame = _ray_frame(setup, batch)
    plan = _plan_rays(setup, frame, total, rays)
    sizes = slot_buckets(setup)
    flat_sinogram = tf.reshape(sinogram, [-1])
    flat_applied = tf.reshape(applied, [-1])
    size = batch * math.prod(padded_shape(setup.volume_shape))
    offsets = corner_offsets(setup.volume_shape)

    def contribution(ray_ids: tf.Tensor, real: tf.Tensor, slots: int) -> tf.Tensor:
        samples = _ray_samples(setup, frame, ray_ids, real, slots)
        upstream = tf.where(samples.real, tf.gather(flat_sinogram, samples.ray_ids), 0.0) * samples.mm_per_index
        use = tf.gather(flat_applied, samples.ray_ids)
        total_contribution = tf.zeros([size])
        for points, coefficients in (
            (samples.samples, samples.plain),
            (samples.ends, tf.where(use[:, None], samples.correction, 0.0)),
        ):
            values = tf.stack([coefficients * upstream[:, None] * weight for weight in points.weights], axis=-1)
            total_contribution += scatter_corners(values, points.base, offsets, size)
        return total_contribution

    def body(chunk: tf.Tensor, accumulated: tf.Tensor):
        ray_ids, real = _chunk_rays(plan, chunk, rays)
        branches = [(lambda slots=slots: contribution(ray_ids, real, slots)) for slots in sizes]
        branches.append(lambda: tf.zeros([size]))
        return chunk + 1, accumulated + tf.switch_case(tf.gather(plan.branch, chunk), branches)

    _, accumulated = tf.while_loop(
        lambda chunk, *_: chunk < plan.chunks, body, (tf.constant(0), tf.zeros([size])), parallel_iterations=1
    )
    return crop_padding(accumulated, [batch], setup.volume_shape)
