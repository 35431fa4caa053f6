"""The scanner of a phantom hospital: polychromatic cone-beam acquisition and FDK reconstruction.

For a patient given as water/iodine basis maps (:class:`~fedsim_tf.data.phantom_object.BasisVolume`)
on the output grid (field of view) and, optionally, on a coarse grid over the rest of the chest:

1. cone-beam line integrals of both basis maps (``pyronn_ops.cone_projection3d``, circular full
   scan, the site's geometry); a moving heart is given as :data:`~fedsim_tf.data.scanners.MOTION_GROUPS`
   phases, each projected over its own consecutive block of views. The coarse chest (voxels of
   ``coarse_factor`` output voxels, 4-6 mm) is projected at matching sampling, every second view
   onto pixels twice as wide and tall, and interpolated linearly (circularly over the views) to
   the full sinogram: its projections vary on scales of several such pixels;
2. the detected signal of the site's spectrum behind them
   (:class:`~fedsim_tf.physics.polychromatic.PolychromaticScanner`: beam hardening);
3. quanta ``~ Poisson(N0 T)`` (``N0`` = ``photons_per_pixel``), the detector's Gaussian PSF
   (blurring signal and quantum noise alike, as light spread in a scintillator does), additive
   Gaussian electronic noise, then ``p = -ln(max(q, 1) / N0)``;
4. FDK on the output grid (Ram-Lak times the site's window, 2x zero padding) and the HU scale
   of the site's water calibration (``ScannerSettings.kev``).

Without noise (``photons_per_pixel=inf``) steps 3's Poisson and electronic noise are skipped and
``p = -ln T`` blurred by the PSF in the intensity domain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from fedsim_tf.data.phantom_object import BasisVolume
from fedsim_tf.data.scanners import MOTION_GROUPS, ScannerSettings
from fedsim_tf.grid import Grid
from fedsim_tf.physics import materials
from fedsim_tf.physics.polychromatic import PolychromaticScanner

if TYPE_CHECKING:
    from pyronn_ops import GeometryCone3D

COUNT_FLOOR = 1.0
"""Detected quanta below this are raised to it before the log (photon starvation)."""
MOTION_FADE_MM = 8.0
"""Width (Gaussian sd, mm) over which cardiac motion fades out around the heart."""


def scanner_geometry(
    settings: ScannerSettings, grid: Grid, views: int | None = None, binning: int = 1
) -> GeometryCone3D:
    """The site's scanner with ``grid`` (axis-aligned) as the volume.

    Args:
        settings: the site.
        grid: the volume's grid.
        views: number of views over the full circle (default ``settings.num_views``).
        binning: detector pixels ``binning`` times as wide and tall, ``1 / binning`` as many per
            axis (pixel ``i`` of a binned row sits where pixel ``binning * i`` of a full row does).
    """
    from pyronn_ops import GeometryCone3D, circular_trajectory_3d

    height, width = settings.detector_shape()
    dv, du = settings.detector_spacing()
    geometry = GeometryCone3D(
        volume_shape=grid.shape,
        volume_spacing=grid.spacing_zyx,
        detector_shape=(height // binning, width // binning),
        detector_spacing=(dv * binning, du * binning),
        number_of_projections=settings.num_views if views is None else views,
        angular_range=2 * np.pi,
        source_detector_distance=settings.source_detector_distance,
        source_isocenter_distance=settings.source_isocenter_distance,
        volume_origin=grid.affine[:3, 3][::-1],
    )
    geometry.set_trajectory(circular_trajectory_3d(geometry))
    return geometry


def cardiac_phases(
    volume: BasisVolume, heart: np.ndarray, motion_mm: float, rng: np.random.Generator
) -> list[BasisVolume]:
    """The volume at :data:`MOTION_GROUPS` consecutive cardiac phases of one rotation.

    The heart contracts and shifts: displacement ``w(x) a_g ((x - c) / R + u / 2)`` with ``c``
    the heart's centre, ``R`` its mean radius, ``u`` a random unit vector, ``a_g = motion_mm
    sin(phi_0 + 2 pi f (g + 1/2) / G)`` (the rotation spans ``f`` of 0.6-0.9 cardiac cycles) and
    ``w`` the heart mask blurred by :data:`MOTION_FADE_MM` (1 inside, 0 far outside).

    Args:
        volume: the patient on the output grid (unchanged).
        heart: ``(Z, Y, X)`` bool heart mask on ``volume.grid``.
        motion_mm: peak displacement at the heart's surface (mm).
        rng: random source.
    """
    spacing = volume.grid.spacing_zyx
    window = np.clip(2.0 * ndimage.gaussian_filter(heart.astype(np.float32), MOTION_FADE_MM / spacing), 0.0, 1.0)
    inside = np.argwhere(window > 1e-3)
    region = tuple(slice(int(a), int(b) + 1) for a, b in zip(inside.min(axis=0), inside.max(axis=0)))
    k, j, i = np.meshgrid(*(np.arange(s.start, s.stop, dtype=np.float64) for s in region), indexing="ij")
    points_zyx = np.stack([k, j, i])
    heart_points = np.argwhere(heart).astype(np.float64)
    centre = heart_points.mean(axis=0)
    radius_mm = float(np.linalg.norm((heart_points - centre) * spacing, axis=1).mean())
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    phase0, cycles = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 0.9)
    w = window[region]
    phases = []
    for g in range(MOTION_GROUPS):
        amplitude = motion_mm * np.sin(phase0 + 2 * np.pi * cycles * (g + 0.5) / MOTION_GROUPS)
        offset_mm = (points_zyx - centre[:, None, None, None]) * spacing[:, None, None, None] / radius_mm
        offset_mm = amplitude * (offset_mm + direction[:, None, None, None] / 2)
        source = points_zyx - w * offset_mm / spacing[:, None, None, None]  # sample where the tissue came from
        moved = volume.copy()
        for values in (moved.water, moved.iodine):
            values[region] = ndimage.map_coordinates(values, source, order=1, mode="nearest")
        phases.append(moved)
    return phases


def line_integrals(
    settings: ScannerSettings, phases: list[BasisVolume], coarse: BasisVolume | None
) -> tuple[np.ndarray, np.ndarray]:
    """Basis line integrals of the patient.

    Args:
        settings: the site.
        phases: one volume (still) or :data:`MOTION_GROUPS` cardiac phases on the output grid.
        coarse: the rest of the chest on a coarse grid (zero inside the field of view) or None.

    Returns:
        ``(water mm, iodine mg/mL*mm)``, each ``(N, H, W)`` float32.
    """
    from pyronn_ops import cone_projection3d

    grid = phases[0].grid
    full = scanner_geometry(settings, grid)
    stack = np.stack([v for p in phases for v in (p.water, p.iodine)])
    if len(phases) == 1:
        sinogram = cone_projection3d(stack, full).numpy()
    elif len(phases) == MOTION_GROUPS:
        per = settings.num_views // MOTION_GROUPS
        blocks = full.require_trajectory().reshape(MOTION_GROUPS, per, 3, 4)
        matrices = np.repeat(blocks, 2, axis=0)
        parts = cone_projection3d(stack, scanner_geometry(settings, grid, per), projection_matrices=matrices).numpy()
        sinogram = parts.reshape(MOTION_GROUPS, 2, per, *parts.shape[2:]).transpose(1, 0, 2, 3, 4)
        sinogram = sinogram.reshape(2, settings.num_views, *parts.shape[2:])
    else:
        raise ValueError(f"phases: expected 1 or {MOTION_GROUPS} volumes, got {len(phases)}")
    if coarse is not None:
        geometry = scanner_geometry(settings, coarse.grid, settings.num_views // 2, binning=2)
        sparse = cone_projection3d(np.stack([coarse.water, coarse.iodine]), geometry).numpy()
        sinogram = sinogram + upsample_sinogram(sparse, sinogram.shape[1:])
    return sinogram[0], sinogram[1]


def _double_axis(values: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Linear interpolation along ``axis`` from samples at indices ``2 i`` to ``size`` samples
    (indices beyond the last sample take its value)."""
    moved = np.moveaxis(values, axis, 0)
    out = np.empty((size, *moved.shape[1:]), dtype=np.float32)
    count = min(moved.shape[0], (size + 1) // 2)
    out[0::2][:count] = moved[:count]
    out[0::2][count:] = moved[count - 1]
    odd = out[1::2]
    pairs = min(len(odd), moved.shape[0] - 1)
    odd[:pairs] = (moved[:pairs] + moved[1 : pairs + 1]) / 2
    odd[pairs:] = moved[pairs] if pairs < moved.shape[0] else moved[-1]
    return np.moveaxis(out, 0, axis)


def upsample_sinogram(sparse: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """``(B, N/2, H/2, W/2)`` projections (every second view, 2x2 binned pixels) -> ``(B, N, H, W)``:
    odd views are the mean of their two neighbours (circularly), pixels interpolated linearly."""
    views = np.empty((sparse.shape[0], shape[0], *sparse.shape[2:]), dtype=np.float32)
    views[:, 0::2] = sparse
    views[:, 1::2] = (sparse + np.roll(sparse, -1, axis=1)) / 2
    return _double_axis(_double_axis(views, 2, shape[1]), 3, shape[2])


def measure(
    settings: ScannerSettings, water_mm: np.ndarray, iodine_mm: np.ndarray, rng: np.random.Generator,
    photons_per_pixel: float | None = None,
) -> np.ndarray:
    """Measured attenuation sinogram ``p`` (steps 2-3 of the module docstring).

    Args:
        settings: the site.
        water_mm, iodine_mm: ``(N, H, W)`` basis line integrals.
        rng: random source of the noise.
        photons_per_pixel: override of the site's dose; ``inf`` = no noise.

    Returns:
        ``(N, H, W)`` float32.
    """
    transmission = np.exp(-PolychromaticScanner(settings.spectrum()).log_attenuation(water_mm, iodine_mm))
    dose = settings.photons_per_pixel if photons_per_pixel is None else float(photons_per_pixel)
    sigma = (0.0, settings.detector_blur_px, settings.detector_blur_px)
    if not np.isfinite(dose):
        return -np.log(ndimage.gaussian_filter(transmission, sigma)).astype(np.float32)
    quanta = rng.poisson(dose * transmission).astype(np.float32)
    quanta = ndimage.gaussian_filter(quanta, sigma)
    quanta += rng.normal(0.0, settings.electronic_noise, quanta.shape).astype(np.float32)
    return -np.log(np.maximum(quanta, COUNT_FLOOR) / dose).astype(np.float32)


def reconstruct(settings: ScannerSettings, sinogram: np.ndarray, grid: Grid) -> np.ndarray:
    """FDK of a ``(N, H, W)`` attenuation sinogram onto ``grid``, in the site's HU.

    Returns:
        ``(Z, Y, X)`` float32 HU.
    """
    import tensorflow as tf

    from pyronn_ops import fdk_reconstruction

    mu_per_mm = fdk_reconstruction(
        tf.constant(sinogram[None], tf.float32), scanner_geometry(settings, grid), filter="ram_lak",
        window=settings.window, padding=2.0,
    )[0].numpy()
    return materials.mu_to_hu(mu_per_mm * 10.0, settings.kev).astype(np.float32)


def scan(
    settings: ScannerSettings,
    phases: list[BasisVolume],
    coarse: BasisVolume | None,
    rng: np.random.Generator,
    photons_per_pixel: float | None = None,
) -> np.ndarray:
    """Acquire and reconstruct one patient (module docstring).

    Args:
        settings: the site.
        phases: the patient on the output grid: one volume, or :data:`MOTION_GROUPS` phases.
        coarse: the rest of the chest (zero inside the field of view) or None.
        rng: random source of the noise.
        photons_per_pixel: override of the site's dose; ``inf`` = no noise.

    Returns:
        ``(Z, Y, X)`` float32 HU on the output grid.
    """
    water, iodine = line_integrals(settings, phases, coarse)
    return reconstruct(settings, measure(settings, water, iodine, rng, photons_per_pixel), phases[0].grid)
