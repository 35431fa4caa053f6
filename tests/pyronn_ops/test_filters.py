"""Reconstruction filters against explicit DFT sums, the continuous Ram-Lak limit and window values."""

import math

import numpy as np
import pytest

from pyronn_ops import filters
from pyronn_ops.geometry import GeometryCone3D


def _explicit_ram_lak_dft(width: int, du: float) -> np.ndarray:
    """Float64 DFT by direct summation of the spatial Ram-Lak kernel over signed offsets."""
    offsets = [k if k <= width // 2 else k - width for k in range(width)]
    if width % 2 == 0:
        offsets[width // 2] = width // 2  # the Nyquist tap appears once
    taps = []
    for n in offsets:
        if n == 0:
            taps.append(1.0 / (4.0 * du * du))
        elif n % 2:
            taps.append(-1.0 / (math.pi**2 * n * n * du * du))
        else:
            taps.append(0.0)
    k = np.arange(width)[:, None]
    phase = np.exp(-2j * np.pi * k * np.array(offsets)[None, :] / width)
    return (phase @ np.array(taps)).real


@pytest.mark.parametrize("width, du", [(64, 0.7), (63, 1.3), (10, 2.0)])
def test_ram_lak_equals_direct_dft_of_spatial_kernel(width: int, du: float) -> None:
    expected = _explicit_ram_lak_dft(width, du)
    got = filters.ram_lak(width, du)
    assert got.dtype == np.float32 and got.shape == (width,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * np.abs(expected).max())


def test_ram_lak_approaches_continuous_ramp() -> None:
    width, du = 1024, 0.5
    kernel = filters.ram_lak(width, du).astype(np.float64)
    frequency = np.abs(np.fft.fftfreq(width))
    # Truncating sum_n odd 1/n^2 after |n| < W/2 leaves a tail of about 1/W: error <= 2/(pi^2 W du^2).
    assert np.max(np.abs(kernel - frequency / du**2)) < 2.2 / (math.pi**2 * width * du**2)
    # DC: 1/(4 du^2) - (2/(pi^2 du^2)) sum_{odd n < W/2} 1/n^2, with sum_{all odd} 1/n^2 = pi^2/8,
    # so the DC value is the positive tail 2/(pi^2 du^2) sum_{odd n > W/2} 1/n^2 ~ 1/(pi^2 du^2 (W/2)).
    assert kernel[0] == pytest.approx(2.0 / (math.pi**2 * du**2 * width), rel=0.01)
    assert kernel[width // 2] == pytest.approx(0.5 / du**2, rel=1e-3)


def test_ramp_is_unitless_triangle() -> None:
    np.testing.assert_allclose(filters.ramp(8), [0, 0.125, 0.25, 0.375, 0.5, 0.375, 0.25, 0.125], atol=0)
    np.testing.assert_allclose(filters.ramp(5), [0, 0.2, 0.4, 0.4, 0.2], atol=1e-7)


def test_head_ram_lak_is_scaled_abs_frequency() -> None:
    kernel = filters.ram_lak_fft(8, 2.0)
    np.testing.assert_allclose(kernel, np.array([0, 1, 2, 3, 4, 3, 2, 1]) / 8 / 4.0, atol=1e-7)


def test_windows_at_known_frequencies() -> None:
    width = 8  # fftfreq: 0, 1/8, 1/4, 3/8, -1/2, ...
    assert filters.window("hann", width)[[0, 2, 4]] == pytest.approx([1.0, 0.5, 0.0], abs=1e-7)
    assert filters.window("hamming", width)[[0, 2, 4]] == pytest.approx([1.0, 0.54, 0.08], abs=1e-7)
    assert filters.window("cosine", width)[[0, 2, 4]] == pytest.approx([1.0, math.sqrt(0.5), 0.0], abs=1e-7)
    assert filters.window("shepp_logan", width)[[0, 2, 4]] == pytest.approx(
        [1.0, math.sin(math.pi / 4) / (math.pi / 4), 2 / math.pi], abs=1e-7
    )
    windowed = filters.filter_kernel("ram_lak_fft", width, 1.0, "hann")
    assert windowed[2] == pytest.approx(0.25 * 0.5, abs=1e-7)
    with pytest.raises(ValueError, match="window"):
        filters.window("gauss", width)
    with pytest.raises(ValueError, match="filter"):
        filters.filter_kernel("ramp", width, 1.0)


def test_padded_width() -> None:
    assert filters.padded_width(100) == 100
    assert filters.padded_width(100, "pow2") == 256
    assert filters.padded_width(128, "pow2") == 256
    assert filters.padded_width(100, 1.5) == 150
    with pytest.raises(ValueError, match="padding"):
        filters.padded_width(100, 0.5)
    with pytest.raises(ValueError, match="padding"):
        filters.padded_width(100, "next")
    with pytest.raises(ValueError, match="detector_spacing"):
        filters.ram_lak(16, 0.0)


def test_ram_lak_3d_tiles_views() -> None:
    geometry = GeometryCone3D((8, 8, 8), (1, 1, 1), (6, 10), (1.0, 0.8), 5, 2 * math.pi, 1200, 750)
    tiled = filters.ram_lak_3D(geometry)
    assert tiled.shape == (5, 1, 10)
    np.testing.assert_allclose(tiled[3, 0], _explicit_ram_lak_dft(10, 0.8), atol=1e-5)
