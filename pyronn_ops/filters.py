"""Reconstruction filters for filtered back-projection, sampled on the FFT frequency grid.

Every kernel is a 1D array over ``W`` detector columns in NumPy FFT order (index ``k`` is the
frequency ``fftfreq(W)[k]`` in cycles per pixel), meant to multiply ``fft(row)`` along ``u``.
Kernels carrying ``1/du^2`` turn a discrete convolution sum into the mm-scaled ramp filter that
PYRO-NN's back-projector expects (its ``projection_multiplier`` holds the remaining ``du``).

Available kernels (``FILTERS``):

* ``"ram_lak"`` (PYRO-NN 0.1.0, the FDK default): real part of the DFT of the band-limited spatial
  Ram-Lak kernel wrapped circularly over the row. Its DC value is small but positive, which
  compensates the truncation of an unpadded row.
* ``"ram_lak_fft"`` (PYRO-NN >= 1.0): ``|fftfreq(W)| / du^2`` (zero DC).

Optional apodisation windows (``WINDOWS``) multiply either kernel: ``"shepp_logan"``, ``"cosine"``,
``"hamming"``, ``"hann"``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

FILTERS = ("ram_lak", "ram_lak_fft")
WINDOWS = ("shepp_logan", "cosine", "hamming", "hann")


def _check_width(detector_width: int) -> int:
    """Validate a row length (number of detector columns or padded FFT length)."""
    if int(detector_width) != detector_width or detector_width < 1:
        raise ValueError(f"detector_width must be a positive integer, got {detector_width}")
    return int(detector_width)


def _check_spacing(detector_spacing: float) -> float:
    """Validate a pixel size in mm."""
    spacing = float(detector_spacing)
    if not math.isfinite(spacing) or spacing <= 0:
        raise ValueError(f"detector_spacing must be positive and finite, got {detector_spacing}")
    return spacing


def ramp(detector_width: int) -> np.ndarray:
    """PYRO-NN 0.1.0 unitless ramp: a triangle rising from 0 at DC to 0.5 at Nyquist.

    Args:
        detector_width: ``W`` samples.

    Returns:
        ``(W,)`` float32, ``|fftfreq(W)|`` in cycles per pixel (FFT order).
    """
    width = _check_width(detector_width)
    return np.abs(np.fft.fftfreq(width)).astype(np.float32)


def ram_lak(detector_width: int, detector_spacing: float) -> np.ndarray:
    """PYRO-NN 0.1.0 Ram-Lak filter: DFT of the spatial kernel wrapped over ``W`` taps.

    The spatial kernel is ``h[0] = 1/(4 du^2)``, ``h[n] = -1/(pi^2 n^2 du^2)`` for odd ``n`` and 0
    for even ``n != 0``; tap ``k`` of the row holds ``h[min(k, W - k)]`` (circular wrap).

    Args:
        detector_width: ``W`` samples.
        detector_spacing: ``du`` in mm.

    Returns:
        ``(W,)`` float32 in 1/mm^2, real and even (FFT order).
    """
    width = _check_width(detector_width)
    spacing = _check_spacing(detector_spacing)
    taps = np.arange(width)
    offset = np.minimum(taps, width - taps).astype(np.float64)
    kernel = np.zeros(width, dtype=np.float64)
    kernel[0] = 0.25
    odd = offset % 2 == 1
    kernel[odd] = -1.0 / (np.pi**2 * offset[odd] ** 2)
    return (np.fft.fft(kernel).real / spacing**2).astype(np.float32)


def ram_lak_fft(detector_width: int, detector_spacing: float) -> np.ndarray:
    """PYRO-NN >= 1.0 Ram-Lak filter ``|fftfreq(W)| / du^2``.

    Args:
        detector_width: ``W`` samples.
        detector_spacing: ``du`` in mm.

    Returns:
        ``(W,)`` float32 in 1/mm^2 (FFT order), zero at DC, ``0.5/du^2`` at Nyquist.
    """
    width = _check_width(detector_width)
    spacing = _check_spacing(detector_spacing)
    return (np.abs(np.fft.fftfreq(width)) / spacing**2).astype(np.float32)


def window(name: str, detector_width: int) -> np.ndarray:
    """Apodisation window on the FFT frequency grid ``f = fftfreq(W)`` (cycles per pixel).

    ``"shepp_logan"``: ``sinc(f) = sin(pi f)/(pi f)``; ``"cosine"``: ``cos(pi f)``;
    ``"hamming"``: ``0.54 + 0.46 cos(2 pi f)``; ``"hann"``: ``0.5 + 0.5 cos(2 pi f)``.
    All equal 1 at DC.

    Args:
        name: one of ``WINDOWS``.
        detector_width: ``W`` samples.

    Returns:
        ``(W,)`` float32 (FFT order).
    """
    width = _check_width(detector_width)
    frequency = np.fft.fftfreq(width)
    if name == "shepp_logan":
        values = np.sinc(frequency)
    elif name == "cosine":
        values = np.cos(np.pi * frequency)
    elif name == "hamming":
        values = 0.54 + 0.46 * np.cos(2 * np.pi * frequency)
    elif name == "hann":
        values = 0.5 + 0.5 * np.cos(2 * np.pi * frequency)
    else:
        raise ValueError(f"window must be one of {WINDOWS}, got {name!r}")
    return values.astype(np.float32)


def padded_width(detector_width: int, padding: str | float | None = None) -> int:
    """FFT length for filtering a row of ``W`` samples with zero padding.

    Args:
        detector_width: ``W`` samples.
        padding: ``None`` (no padding, length ``W``), ``"pow2"`` (next power of two ``>= 2 W``) or
            a factor ``>= 1`` (length ``ceil(factor * W)``).

    Returns:
        The padded length ``>= W``.
    """
    width = _check_width(detector_width)
    if padding is None:
        return width
    if isinstance(padding, str):
        if padding != "pow2":
            raise ValueError(f"padding must be None, 'pow2' or a factor >= 1, got {padding!r}")
        return 1 << (2 * width - 1).bit_length()
    factor = float(padding)
    if not math.isfinite(factor) or factor < 1:
        raise ValueError(f"padding factor must be >= 1, got {padding}")
    return int(math.ceil(factor * width - 1e-9))


def filter_kernel(
    name: str,
    detector_width: int,
    detector_spacing: float,
    window_name: str | None = None,
) -> np.ndarray:
    """A reconstruction kernel, optionally apodised.

    Args:
        name: one of ``FILTERS``.
        detector_width: FFT length (``W``, or the padded length from :func:`padded_width`).
        detector_spacing: ``du`` in mm.
        window_name: ``None`` or one of ``WINDOWS``.

    Returns:
        ``(detector_width,)`` float32 in 1/mm^2 (FFT order).
    """
    if name == "ram_lak":
        kernel = ram_lak(detector_width, detector_spacing)
    elif name == "ram_lak_fft":
        kernel = ram_lak_fft(detector_width, detector_spacing)
    else:
        raise ValueError(f"filter must be one of {FILTERS}, got {name!r}")
    if window_name is not None:
        kernel = kernel * window(window_name, detector_width)
    return kernel


def ram_lak_3D(geometry: Any) -> np.ndarray:  # noqa: N802 (PYRO-NN 0.1.0 name)
    """PYRO-NN 0.1.0 ``ram_lak_3D``: :func:`ram_lak` tiled over the views.

    Args:
        geometry: a ``GeometryCone3D`` (uses ``number_of_projections``, ``detector_shape``
            ``(H, W)`` and ``detector_spacing`` ``(dv, du)`` in mm).

    Returns:
        ``(N, 1, W)`` float32, to multiply the FFT along ``u`` of a ``[N, H, W]`` sinogram.
    """
    width = int(geometry.detector_shape[-1])
    kernel = ram_lak(width, float(geometry.detector_spacing[-1]))
    return np.tile(kernel[None, None, :], (int(geometry.number_of_projections), 1, 1))
