"""Phantom hospitals: the embedded default data set, simulated cone-beam CT with labels.

Each volume of a site (see :mod:`fedsim_tf.data.scanners`):

1. draw a heart from the site's population preset (seeded per site and case) with its vertex
   centroid at the isocentre, and voxelise it on the heart-centred output grid;
2. build the chest around it (:mod:`fedsim_tf.data.phantom_anatomy`) and turn materials into
   attenuation (/mm) at the site's effective energy and the case's iodine level
   (:mod:`fedsim_tf.physics.materials`): block-averaged onto the fine simulation grid over the
   field of view, and on a coarse grid over the whole chest with the field of view cut out;
3. cone-beam project both grids (``pyronn_ops.cone_projection3d``) and add them;
4. Poisson noise: ``I = Poisson(I0 exp(-p))``, ``p = -log(max(I, 1) / I0)``;
5. FDK (``pyronn_ops.fdk_reconstruction``, Ram-Lak with the site's window) on a grid
   ``reconstruction_factor`` times coarser than the output, trilinear to the output grid,
   and HU with the water value at the site's energy;
6. write ``<site>/ct_train_<n>_image.nii.gz`` (int16 HU) and ``..._label.nii.gz`` (MM-WHS codes)
   plus ``<site>/scanner.json``.

Everything is deterministic for a seed: the random stream of a case depends only on
``(seed, site name, case number)``. A finished set carries ``phantom_manifest.json``; a set is
rebuilt (in a temporary folder, then renamed into place) whenever the manifest is missing or
differs from the current version, seed and settings, or a listed file is missing.

Command line::

    python -m fedsim_tf.data.phantoms --out DIR [--small] [--seed 0] [--sites CT20,CT34LC,CT34MC] [--workers 2]
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import shutil
import sys
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from fedsim_tf.atomic import write_json_atomic
from fedsim_tf.data.labels import MMWHS_TABLE, encode_labels
from fedsim_tf.data.layouts import mmwhs_filenames
from fedsim_tf.data.nifti import write_nifti
from fedsim_tf.data.phantom_anatomy import TorsoParameters, material_volume, torso_for_heart
from fedsim_tf.data.scanners import COARSE_FACTOR, SITE_NAMES, ScannerSettings, site_settings
from fedsim_tf.grid import Grid
from fedsim_tf.physics import materials
from fedsim_tf.shape.mesh import HeartMesh
from fedsim_tf.shape.template import TEMPLATE_VERSION, build_heart, sample_parameters
from fedsim_tf.shape.voxelize import voxelize

if TYPE_CHECKING:
    from pyronn_ops import GeometryCone3D

PHANTOM_VERSION = 1
"""Bumped whenever the generated images would change; part of the manifest."""
MANIFEST_NAME = "phantom_manifest.json"
SCANNER_JSON = "scanner.json"
SMALL_OUTPUT_SIZE = 64
SMALL_VOLUMES_PER_SITE = 2
SMALL_NUM_VIEWS = 60
COUNT_FLOOR = 1.0
"""Detected photon counts below this are raised to it before the log (zero counts)."""
HU_RANGE: tuple[int, int] = (-1024, 3071)
BODY_SCALE_JITTER = 0.05
"""The chest scales with the heart's size parameter times ``U(1 - j, 1 + j)``."""


@dataclass(frozen=True)
class PhantomCase:
    """One simulated volume.

    Attributes:
        site: site name.
        case_number: MM-WHS case number (1001, ...).
        image_hu: ``(Z, Y, X)`` float32 reconstructed HU on ``grid``.
        labels: ``(Z, Y, X)`` uint8 label indices 0..7 on ``grid``.
        grid: the output grid (world RAS+ mm, heart centroid at the origin).
        iodine_mg_ml: iodine concentration of the blood (mg I/mL).
        body_scale: chest size relative to an adult.
    """

    site: str
    case_number: int
    image_hu: np.ndarray
    labels: np.ndarray
    grid: Grid
    iodine_mg_ml: float
    body_scale: float


def small_settings(settings: ScannerSettings, volumes_per_site: int = SMALL_VOLUMES_PER_SITE) -> ScannerSettings:
    """The ``--small`` preset of a site: 64^3 output, ``volumes_per_site`` volumes, 60 views."""
    return settings.reduced(SMALL_OUTPUT_SIZE, volumes_per_site, SMALL_NUM_VIEWS)


SHAPE_STREAM = 0
SCAN_STREAM = 1


def case_rng(seed: int, site: str, case_number: int, stream: int) -> np.random.Generator:
    """Random stream of one case (``SHAPE_STREAM``: heart, chest size, iodine; ``SCAN_STREAM``:
    chest details and noise), independent of which other sites/cases are generated."""
    return np.random.default_rng([int(seed), zlib.crc32(site.encode()), int(case_number), int(stream)])


def output_grid(settings: ScannerSettings) -> Grid:
    """Heart-centred output grid of a site (centre at the isocentre, world origin)."""
    return Grid.centred(settings.output_shape, settings.fov_mm)


def _scaled_grid(settings: ScannerSettings, factor: int) -> Grid:
    shape = tuple(n // factor for n in settings.output_shape)
    return Grid.centred(shape, settings.fov_mm)


def _coarse_grid(settings: ScannerSettings, torso: TorsoParameters) -> Grid:
    """Whole-chest grid, ``COARSE_FACTOR`` times the fine spacing, voxel faces aligned with the
    field-of-view box so that the box is exactly a set of whole voxels."""
    half_len = settings.body_half_length()
    bounds = torso.body_bounds((-half_len, half_len))  # (2, 3) xyz
    spacing_xyz = np.array(settings.fine_spacing[::-1]) * COARSE_FACTOR
    half_fov_xyz = np.array(settings.fov_mm[::-1]) / 2
    below = np.ceil(np.maximum(-half_fov_xyz - bounds[0], 0) / spacing_xyz - 1e-9)
    above = np.ceil(np.maximum(bounds[1] - half_fov_xyz, 0) / spacing_xyz - 1e-9)
    inside = np.rint(2 * half_fov_xyz / spacing_xyz)
    shape_xyz = (below + inside + above).astype(int)
    affine = np.eye(4)
    affine[:3, :3] = np.diag(spacing_xyz)
    affine[:3, 3] = -half_fov_xyz - below * spacing_xyz + spacing_xyz / 2
    return Grid(tuple(int(n) for n in shape_xyz[::-1]), affine)


def _geometry(settings: ScannerSettings, grid: Grid) -> GeometryCone3D:
    """The site's scanner with ``grid`` (axis-aligned) as the volume; full-circle trajectory."""
    from pyronn_ops import GeometryCone3D, circular_trajectory_3d

    geometry = GeometryCone3D(
        volume_shape=grid.shape,
        volume_spacing=grid.spacing_zyx,
        detector_shape=settings.detector_shape(),
        detector_spacing=settings.detector_spacing(),
        number_of_projections=settings.num_views,
        angular_range=2 * np.pi,
        source_detector_distance=settings.source_detector_distance,
        source_isocenter_distance=settings.source_isocenter_distance,
        volume_origin=grid.affine[:3, 3][::-1],
    )
    geometry.set_trajectory(circular_trajectory_3d(geometry))
    return geometry


def _block_mean(volume: np.ndarray, factor: int) -> np.ndarray:
    """``(Z, Y, X)`` -> ``(Z/f, Y/f, X/f)`` mean over ``f^3`` blocks."""
    z, y, x = (n // factor for n in volume.shape)
    return volume.reshape(z, factor, y, factor, x, factor).mean(axis=(1, 3, 5))


def case_heart(settings: ScannerSettings, case_number: int, seed: int) -> tuple[HeartMesh, float, float]:
    """The heart of a case, with the chest scale and iodine level drawn from the same stream.

    Returns:
        ``(heart, body_scale, iodine_mg_ml)``; the heart's vertex centroid is at the origin,
        apex left-anterior-inferior.
    """
    rng = case_rng(seed, settings.site, case_number, SHAPE_STREAM)
    params = sample_parameters(rng, settings.population)
    heart = build_heart(params)
    scale = params.size * rng.uniform(1 - BODY_SCALE_JITTER, 1 + BODY_SCALE_JITTER)
    iodine = rng.uniform(*settings.iodine_mg_ml)
    return heart, float(min(scale, settings.max_body_scale)), float(iodine)


def simulate_case(
    settings: ScannerSettings,
    case_number: int,
    seed: int,
    photons_per_pixel: float | None = None,
) -> PhantomCase:
    """Simulate one volume of a site.

    Args:
        settings: the site.
        case_number: case number (``settings.first_case`` ...).
        seed: data-set seed.
        photons_per_pixel: override of the site's dose; ``float("inf")`` switches noise off.

    Returns:
        The reconstructed case on :func:`output_grid`.
    """
    import tensorflow as tf

    from pyronn_ops.fdk import fdk_reconstruction
    from pyronn_ops.ops import cone_projection3d

    heart, scale, iodine = case_heart(settings, case_number, seed)
    rng = case_rng(seed, settings.site, case_number, SCAN_STREAM)
    vertices = heart.stacked_vertices()
    torso = torso_for_heart(np.stack([vertices.min(axis=0), vertices.max(axis=0)]), scale, rng)

    grid = output_grid(settings)
    labels = voxelize(heart, grid)
    lut_per_mm = materials.per_cm_to_per_mm(materials.attenuation_lut(settings.kev, iodine)).astype(np.float32)
    fine = _block_mean(lut_per_mm[material_volume(grid, torso, labels)], settings.simulation_factor)
    fine_grid = _scaled_grid(settings, settings.simulation_factor)
    coarse_grid = _coarse_grid(settings, torso)
    coarse = lut_per_mm[material_volume(coarse_grid, torso)]
    centres = np.abs(coarse_grid.voxel_centres())
    coarse[np.all(centres < np.array(settings.fov_mm[::-1]) / 2, axis=-1)] = 0.0

    sinogram = cone_projection3d(fine[None], _geometry(settings, fine_grid))[0].numpy()
    sinogram += cone_projection3d(coarse[None], _geometry(settings, coarse_grid))[0].numpy()
    dose = settings.photons_per_pixel if photons_per_pixel is None else float(photons_per_pixel)
    if np.isfinite(dose):
        counts = rng.poisson(dose * np.exp(-np.maximum(sinogram, 0.0)))
        sinogram = -np.log(np.maximum(counts, COUNT_FLOOR) / dose)

    recon_grid = _scaled_grid(settings, settings.reconstruction_factor)
    recon = fdk_reconstruction(
        tf.constant(sinogram[None], tf.float32), _geometry(settings, recon_grid), filter="ram_lak",
        window=settings.window, padding=2.0,
    )[0].numpy()
    recon = ndimage.zoom(recon, settings.reconstruction_factor, order=1, mode="nearest", grid_mode=True)
    hu = materials.mu_to_hu(recon * 10.0, settings.kev).astype(np.float32)
    return PhantomCase(settings.site, case_number, hu, labels, grid, iodine, scale)


def write_case(case: PhantomCase, folder: str | os.PathLike[str]) -> tuple[str, str]:
    """Write a case in MM-WHS layout (int16 HU image, int16 MM-WHS label codes).

    Returns:
        ``(image_name, label_name)`` relative to ``folder``.
    """
    image_name, label_name = mmwhs_filenames(case.case_number)
    image = np.clip(np.rint(case.image_hu), *HU_RANGE).astype(np.int16)
    write_nifti(Path(folder) / image_name, image, case.grid, np.int16)
    write_nifti(Path(folder) / label_name, encode_labels(case.labels, MMWHS_TABLE), case.grid, np.int16)
    return image_name, label_name


def _site_entry(settings: ScannerSettings) -> dict:
    files = [name for n in range(settings.num_volumes) for name in mmwhs_filenames(settings.first_case + n)]
    return {"settings": settings.to_json(), "files": [SCANNER_JSON, *files]}


def expected_manifest(sites: Sequence[ScannerSettings], seed: int, small: bool) -> dict:
    """Manifest a complete, current set of ``sites`` carries (JSON-normalised: lists, not tuples)."""
    manifest = {
        "version": PHANTOM_VERSION,
        "template_version": TEMPLATE_VERSION,
        "seed": int(seed),
        "small": bool(small),
        "sites": {s.site: _site_entry(s) for s in sites},
    }
    return json.loads(json.dumps(manifest))


def _read_manifest(out_dir: Path) -> dict:
    try:
        return json.loads((out_dir / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return {}


def _site_is_current(out_dir: Path, manifest: dict, expected: dict, site: str) -> bool:
    header = ("version", "template_version", "seed", "small")
    if any(manifest.get(k) != expected[k] for k in header):
        return False
    entry = manifest.get("sites", {}).get(site)
    return entry == expected["sites"][site] and all((out_dir / site / f).is_file() for f in entry["files"])


def _init_worker(threads: int) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _generate_one(settings: ScannerSettings, case_number: int, seed: int, folder: str) -> str:
    write_case(simulate_case(settings, case_number, seed), folder)
    return f"{settings.site}/{mmwhs_filenames(case_number)[0]}"


def _run_jobs(jobs: list[tuple], workers: int) -> None:
    start = time.monotonic()

    def progress(done: int, name: str) -> None:
        elapsed = time.monotonic() - start
        left = elapsed / done * (len(jobs) - done)
        print(f"phantoms: {done}/{len(jobs)} volumes ({name}), {elapsed:.0f} s elapsed, ~{left:.0f} s left",
              file=sys.stderr, flush=True)

    if workers <= 1:
        for done, job in enumerate(jobs, 1):
            progress(done, _generate_one(*job))
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, context, _init_worker, (threads,)) as pool:
        futures = [pool.submit(_generate_one, *job) for job in jobs]
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            progress(done, future.result())


def ensure_phantom_hospitals(
    out_dir: str | os.PathLike[str],
    small: bool = False,
    seed: int = 0,
    sites: Sequence[str] = SITE_NAMES,
    workers: int = 1,
    volumes_per_site: int | None = None,
) -> list[Path]:
    """Generate the phantom hospitals under ``out_dir`` unless a complete, current set is there.

    Stale or incomplete sites are rebuilt in a temporary folder inside ``out_dir`` and renamed
    into place; the manifest is written last, so an interrupted run leaves no site that looks
    complete. One generator per ``out_dir`` at a time.

    Args:
        out_dir: root folder; sites go to ``out_dir/<site>``.
        small: the fast preset (:func:`small_settings`).
        seed: data-set seed.
        sites: site names (default all three).
        workers: parallel processes.
        volumes_per_site: with ``small``, override its 2 volumes per site (all training).

    Returns:
        The site folders, in the order of ``sites``.
    """
    out_dir = Path(out_dir)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if volumes_per_site is not None and (not small or volumes_per_site < 1):
        raise ValueError(f"volumes_per_site={volumes_per_site}: only a positive count with small=True")
    chosen = [site_settings(name) for name in sites]
    if small:
        chosen = [small_settings(s, volumes_per_site or SMALL_VOLUMES_PER_SITE) for s in chosen]
    expected = expected_manifest(chosen, seed, small)
    manifest = _read_manifest(out_dir)
    stale = [s for s in chosen if not _site_is_current(out_dir, manifest, expected, s.site)]
    if stale:
        out_dir.mkdir(parents=True, exist_ok=True)
        build = out_dir / f".phantoms-build-{uuid.uuid4().hex}"
        try:
            jobs = []
            for settings in stale:
                settings.write_json(build / settings.site / SCANNER_JSON)
                jobs += [(settings, settings.first_case + n, seed, str(build / settings.site))
                         for n in range(settings.num_volumes)]
            _run_jobs(jobs, workers)
            same_header = all(manifest.get(k) == expected[k] for k in ("version", "template_version", "seed", "small"))
            kept = manifest.get("sites", {}) if same_header else {}
            for settings in stale:
                final = out_dir / settings.site
                if final.exists():
                    final.rename(build / f"old-{settings.site}")
                (build / settings.site).rename(final)
                kept[settings.site] = expected["sites"][settings.site]
            write_json_atomic(out_dir / MANIFEST_NAME, {**expected, "sites": kept})
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return [out_dir / s.site for s in chosen]


def main(argv: list[str]) -> None:
    """absl entry point (flags: ``--out``, ``--small``, ``--seed``, ``--sites``, ``--workers``)."""
    from absl import app, flags

    del argv
    f = flags.FLAGS
    start = time.monotonic()
    try:
        folders = ensure_phantom_hospitals(f.out, small=f.small, seed=f.seed, sites=f.sites, workers=f.workers)
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    print(f"phantoms: ready in {time.monotonic() - start:.0f} s: {', '.join(str(p) for p in folders)}")


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("out", None, "output folder of the phantom hospitals", required=True)
    flags.DEFINE_bool("small", False, "fast preset: 64^3 volumes, 2 per site")
    flags.DEFINE_integer("seed", 0, "data-set seed")
    flags.DEFINE_list("sites", list(SITE_NAMES), "sites to generate")
    flags.DEFINE_integer("workers", 2, "parallel worker processes")


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
