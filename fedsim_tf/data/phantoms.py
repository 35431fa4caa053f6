"""Phantom hospitals: the embedded default data set, simulated cone-beam CT with labels.

Each volume of a site (see :mod:`fedsim_tf.data.scanners`):

1. draw a phantom heart from the site's population (:mod:`fedsim_tf.data.phantom_heart`: the
   template family deformed non-linearly, plus atrial appendages; vertex centroid at the
   isocentre), the chest size and the contrast (:func:`~fedsim_tf.data.phantom_heart_detail.draw_contrast`),
   all seeded per site and case, and voxelise the labels on the heart-centred output grid;
2. build the patient as water/iodine basis maps (:mod:`fedsim_tf.data.phantom_object`): the
   chest with bone marrow, lung texture and lung vessels (:mod:`fedsim_tf.data.phantom_anatomy`)
   on the output grid over the field of view and on a coarse grid over the rest of the chest
   (zero inside the field of view), then the heart's materials, walls, fat, coronaries,
   papillary muscles, trabeculation, valves and great vessels
   (:mod:`fedsim_tf.data.phantom_heart_detail`); for a site with cardiac motion, the heart's
   phases during the rotation;
3. scan it (:mod:`fedsim_tf.data.phantom_scan`): polychromatic cone-beam projection, quantum and
   electronic noise, detector blur, FDK on the output grid, HU of the site's water calibration;
4. write ``<site>/ct_train_<n>_image.nii.gz`` (int16 HU) and ``..._label.nii.gz`` (MM-WHS codes)
   plus ``<site>/scanner.json``.

Everything is deterministic for a seed: the random stream of a case depends only on
``(seed, site name, case number)``. A finished set carries ``phantom_manifest.json``; a set is
rebuilt (in a temporary folder, then renamed into place) whenever the manifest is missing or
differs from the current version, seed and settings, or a listed file is missing.

Command line (the shared ``--phantom_*`` flags of :mod:`fedsim_tf.options`, the error path of
:mod:`fedsim_tf.cli`)::

    python -m fedsim_tf.data.phantoms [--phantom_dir=DIR] [--nophantom_small] [--phantom_volumes=6]
        [--phantom_sites=CT20,CT34LC,CT34MC] [--phantom_workers=2]
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

import numpy as np

from fedsim_tf import cli

from fedsim_tf.atomic import write_json_atomic
from fedsim_tf.data.labels import MMWHS_TABLE, encode_labels
from fedsim_tf.data.layouts import mmwhs_filenames
from fedsim_tf.data.nifti import write_nifti
from fedsim_tf.data.phantom_anatomy import (
    TorsoParameters,
    chest_volume,
    descending_aorta_xy,
    draw_lung_vessels,
    torso_for_heart,
)
from fedsim_tf.data.phantom_heart import PhantomHeart, draw_phantom_heart
from fedsim_tf.data.phantom_heart_detail import Contrast, draw_contrast, great_vessels, paint_heart
from fedsim_tf.data.phantom_object import BasisVolume
from fedsim_tf.data.phantom_scan import cardiac_phases, scan
from fedsim_tf.data.scanners import SITE_NAMES, ScannerSettings, site_settings
from fedsim_tf.grid import Grid
from fedsim_tf.options import CommonConfig, common_config_from_flags
from fedsim_tf.shape.template import TEMPLATE_VERSION

PHANTOM_VERSION = 2
"""Bumped whenever the generated images would change; part of the manifest."""
MANIFEST_NAME = "phantom_manifest.json"
SCANNER_JSON = "scanner.json"
SMALL_OUTPUT_SIZE = 64
SMALL_VOLUMES_PER_SITE = 2
HU_RANGE: tuple[int, int] = (-1024, 3071)
BODY_SCALE_JITTER = 0.05
"""The chest scales with the heart's size times ``U(1 - j, 1 + j)``."""


@dataclass(frozen=True)
class PhantomCase:
    """One simulated volume.

    Attributes:
        site: site name.
        case_number: MM-WHS case number (1001, ...).
        image_hu: ``(Z, Y, X)`` float32 reconstructed HU on ``grid``.
        labels: ``(Z, Y, X)`` uint8 label indices 0..7 on ``grid``.
        grid: the output grid (world RAS+ mm, heart centroid at the origin).
        contrast: the scan's iodine levels.
    """

    site: str
    case_number: int
    image_hu: np.ndarray
    labels: np.ndarray
    grid: Grid
    contrast: Contrast


def small_settings(settings: ScannerSettings, volumes_per_site: int = SMALL_VOLUMES_PER_SITE) -> ScannerSettings:
    """The ``--small`` preset of a site: 64^3 output over the same field of view,
    ``volumes_per_site`` volumes, half the views."""
    return settings.reduced(SMALL_OUTPUT_SIZE, volumes_per_site, settings.num_views // 2)


SHAPE_STREAM = 0
SCAN_STREAM = 1


def case_rng(seed: int, site: str, case_number: int, stream: int) -> np.random.Generator:
    """Random stream of one case (``SHAPE_STREAM``: heart, chest size, contrast; ``SCAN_STREAM``:
    chest, details, motion and noise), independent of which other sites/cases are generated."""
    return np.random.default_rng([int(seed), zlib.crc32(site.encode()), int(case_number), int(stream)])


def output_grid(settings: ScannerSettings) -> Grid:
    """Heart-centred output grid of a site (centre at the isocentre, world origin)."""
    return Grid.centred(settings.output_shape, settings.fov_mm)


def _coarse_grid(settings: ScannerSettings, torso: TorsoParameters) -> Grid:
    """Whole-chest grid, ``coarse_factor`` times the output spacing, voxel faces aligned with the
    field-of-view box so that the box is exactly a set of whole voxels."""
    half_len = settings.body_half_length()
    bounds = torso.body_bounds((-half_len, half_len))  # (2, 3) xyz
    spacing_xyz = np.array(settings.output_spacing[::-1]) * settings.coarse_factor
    half_fov_xyz = np.array(settings.fov_mm[::-1]) / 2
    below = np.ceil(np.maximum(-half_fov_xyz - bounds[0], 0) / spacing_xyz - 1e-9)
    above = np.ceil(np.maximum(bounds[1] - half_fov_xyz, 0) / spacing_xyz - 1e-9)
    inside = np.rint(2 * half_fov_xyz / spacing_xyz)
    shape_xyz = (below + inside + above).astype(int)
    affine = np.eye(4)
    affine[:3, :3] = np.diag(spacing_xyz)
    affine[:3, 3] = -half_fov_xyz - below * spacing_xyz + spacing_xyz / 2
    return Grid(tuple(int(n) for n in shape_xyz[::-1]), affine)


@dataclass(frozen=True)
class CaseDraw:
    """The random make-up of one case before scanning.

    Attributes:
        heart: the phantom heart.
        body_scale: chest size relative to an adult.
        contrast: iodine levels.
    """

    heart: PhantomHeart
    body_scale: float
    contrast: Contrast


def case_heart(settings: ScannerSettings, case_number: int, seed: int) -> CaseDraw:
    """The heart of a case with its chest size and contrast, all from the case's shape stream."""
    rng = case_rng(seed, settings.site, case_number, SHAPE_STREAM)
    heart = draw_phantom_heart(rng, settings.population)
    scale = heart.size * rng.uniform(1 - BODY_SCALE_JITTER, 1 + BODY_SCALE_JITTER)
    contrast = draw_contrast(rng, settings.iodine_mg_ml)
    return CaseDraw(heart, float(min(scale, settings.max_body_scale)), contrast)


def build_patient(
    settings: ScannerSettings, draw: CaseDraw, rng: np.random.Generator
) -> tuple[np.ndarray, BasisVolume, BasisVolume]:
    """The patient of a case as basis maps (steps 1-2 of the module docstring).

    Returns:
        ``(labels on the output grid, patient on the output grid, rest of the chest on the
        coarse grid with the field of view zeroed)``.
    """
    vertices = draw.heart.mesh.stacked_vertices()
    torso = torso_for_heart(np.stack([vertices.min(axis=0), vertices.max(axis=0)]), draw.body_scale, rng)
    grid = output_grid(settings)
    labels = draw.heart.labels(grid)
    vessels = great_vessels(draw.heart, draw.contrast, descending_aorta_xy(torso))
    lung_vessels = draw_lung_vessels([*vessels.pulmonary_veins, *vessels.pulmonary_arteries], draw.body_scale, rng)
    fine = chest_volume(grid, torso, draw.contrast.left, lung_vessels, rng)
    paint_heart(fine, draw.heart, labels, draw.contrast, vessels, rng)
    coarse_grid = _coarse_grid(settings, torso)
    coarse = chest_volume(coarse_grid, torso, draw.contrast.left, lung_vessels, rng)
    in_fov = np.all(np.abs(coarse_grid.voxel_centres()) < np.array(settings.fov_mm[::-1]) / 2, axis=-1)
    coarse.water[in_fov] = 0.0
    coarse.iodine[in_fov] = 0.0
    return labels, fine, coarse


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
    draw = case_heart(settings, case_number, seed)
    rng = case_rng(seed, settings.site, case_number, SCAN_STREAM)
    labels, fine, coarse = build_patient(settings, draw, rng)
    phases = cardiac_phases(fine, labels > 0, settings.motion_mm, rng) if settings.motion_mm > 0 else [fine]
    hu = scan(settings, phases, coarse, rng, photons_per_pixel)
    return PhantomCase(settings.site, case_number, hu, labels, fine.grid, draw.contrast)


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


PHANTOM_SEED = 0
"""The embedded data set is one fixed draw, independent of a run's ``--seed``."""


def phantom_folders(common: CommonConfig) -> list[Path]:
    """The phantom hospitals a command line asks for (``--phantom_dir``, ``--phantom_small``,
    ``--phantom_volumes``, ``--phantom_sites``), generated first where missing or stale."""
    return ensure_phantom_hospitals(
        common.phantom_dir, small=common.phantom_small, seed=PHANTOM_SEED, sites=common.phantom_sites,
        workers=common.phantom_workers, volumes_per_site=common.phantom_volumes if common.phantom_small else None,
    )


def main(argv: list[str]) -> None:
    """Generate (or check) the phantom hospitals of the shared ``--phantom_*`` flags and print their folders."""
    del argv
    start = time.monotonic()
    folders = phantom_folders(common_config_from_flags())
    print(f"phantoms: ready in {time.monotonic() - start:.0f} s: {', '.join(str(p) for p in folders)}")


if __name__ == "__main__":
    cli.run(main)
