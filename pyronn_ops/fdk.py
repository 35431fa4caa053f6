"""Feldkamp-Davis-Kress (FDK) reconstruction: pre-weighting, row filtering, weighted back-projection.

``fdk_reconstruction`` follows PYRO-NN's recipe (cosine weights, FFT along ``u`` times a kernel from
:mod:`pyronn_ops.filters`, inverse FFT, ``cone_backprojection3d``) and adds the angular scale the
back-projector's ``projection_multiplier = SID * SDD * du * pi / N`` leaves out: each view is
weighted by ``SID * SDD * du * step * w / projection_multiplier`` with ``step`` the angular step and
``w`` the redundancy weight (1/2 for a scan without short-scan weighting, Parker's weight for a short
scan). For a full ``2 pi`` scan that factor is exactly 1, i.e. PYRO-NN's result.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from pyronn_ops.ops import cone_backprojection3d
from pyronn_ops.filters import filter_kernel, padded_width
from pyronn_ops.weights import cosine_weights_3d, parker_weights_3d, scan_angles


def filter_sinogram(sinogram: tf.Tensor, kernel: np.ndarray) -> tf.Tensor:
    """Filter every detector row along ``u`` in the Fourier domain (circular convolution).

    Rows are zero-padded to the kernel's length ``L >= W`` before the FFT and cropped back after.

    Args:
        sinogram: float32 ``[..., W]`` (e.g. ``[B, N, H, W]``), ``u`` last.
        kernel: ``(L,)`` real, even kernel in FFT order (e.g. :func:`pyronn_ops.filters.filter_kernel`).

    Returns:
        float32, the shape of ``sinogram``.
    """
    sinogram = tf.convert_to_tensor(sinogram, dtype=tf.float32)
    width = sinogram.shape[-1]
    length = int(np.shape(kernel)[-1])
    if width is None or length < width:
        raise ValueError(f"kernel: length {length} must be >= the sinogram width {width}")
    rank = sinogram.shape.rank
    padded = tf.pad(sinogram, [[0, 0]] * (rank - 1) + [[0, length - width]]) if length > width else sinogram
    half_spectrum = tf.constant(np.asarray(kernel, dtype=np.float32)[: length // 2 + 1], dtype=tf.complex64)
    filtered = tf.signal.irfft(tf.signal.rfft(padded, fft_length=[length]) * half_spectrum, fft_length=[length])
    return filtered[..., :width]


def fdk_weights(geometry: Any, short_scan: bool = False, cosine: bool = True) -> np.ndarray:
    """Per-pixel pre-weights of FDK: cosine weights times the angular redundancy scale.

    Args:
        geometry: a ``GeometryCone3D`` with a trajectory.
        short_scan: apply Parker weights (the scan must cover ``pi + 2 * fan``).
        cosine: apply :func:`pyronn_ops.weights.cosine_weights_3d`.

    Returns:
        ``(N, H, W)`` float32 to multiply a ``[B, N, H, W]`` sinogram before filtering.
    """
    count = int(geometry.number_of_projections)
    height, width = (int(n) for n in geometry.detector_shape)
    step = scan_angles(geometry)[1] if count > 1 else float(abs(geometry.angular_range))
    redundancy = parker_weights_3d(geometry).astype(np.float64) if short_scan else np.full((count, 1, 1), 0.5)
    base = float(geometry.source_isocenter_distance) * float(geometry.source_detector_distance)
    scale = base * float(geometry.detector_spacing[-1]) * step / float(geometry.projection_multiplier)
    weights = np.broadcast_to(scale * redundancy, (count, height, width))
    if cosine:
        weights = weights * cosine_weights_3d(geometry)[None]
    return weights.astype(np.float32)


def fdk_reconstruction(
    sinogram: tf.Tensor,
    geometry: Any,
    filter: str = "ram_lak",  # noqa: A002 (PYRO-NN-style argument name)
    window: str | None = None,
    short_scan: bool = False,
    padding: str | float | None = None,
    cosine: bool = True,
    hardware_interp: bool = True,
) -> tf.Tensor:
    """FDK reconstruction of a circular cone-beam scan.

    Args:
        sinogram: float32 ``[B, N, H, W]`` line integrals (density * mm), views ``N``, rows ``v``
            (``H``), columns ``u`` (``W``).
        geometry: the ``GeometryCone3D`` (with trajectory) the sinogram was measured with.
        filter: a name in :data:`pyronn_ops.filters.FILTERS`; ``"ram_lak"`` is PYRO-NN 0.1.0's.
        window: ``None`` or a name in :data:`pyronn_ops.filters.WINDOWS`.
        short_scan: Parker-weight a short scan (``angular_range >= pi + 2 * fan``).
        padding: zero padding along ``u``: ``None``, ``"pow2"`` or a factor (see
            :func:`pyronn_ops.filters.padded_width`).
        cosine: apply the FDK cosine weights.
        hardware_interp: passed to ``cone_backprojection3d``.

    Returns:
        float32 ``[B, Z, Y, X]`` reconstruction in density units (1/mm if the input is in 1/mm * mm).
    """
    sinogram = tf.convert_to_tensor(sinogram, dtype=tf.float32)
    expected = tuple(int(n) for n in geometry.sinogram_shape)
    if sinogram.shape.rank != 4 or tuple(sinogram.shape[1:]) != expected:
        raise ValueError(f"sinogram must have shape [B, {', '.join(map(str, expected))}], got {sinogram.shape}")
    width = expected[-1]
    kernel = filter_kernel(filter, padded_width(width, padding), float(geometry.detector_spacing[-1]), window)
    weighted = sinogram * tf.constant(fdk_weights(geometry, short_scan=short_scan, cosine=cosine))
    return cone_backprojection3d(filter_sinogram(weighted, kernel), geometry, hardware_interp=hardware_interp)
