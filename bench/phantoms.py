"""Benchmark: generate the phantom hospitals and print time, peak memory and per-site image figures.

    python -m bench.phantoms                       # full default set: 88 volumes at 128^3, 2 workers
    python -m bench.phantoms --phantom_small       # small preset (3 sites x --phantom_volumes=6 volumes at 64^3)

The generation flags are the shared ``--phantom_*`` flags of :mod:`fedsim_tf.options` (here
``--phantom_small`` defaults to false, and ``--phantom_dir`` to a temporary folder deleted afterwards).

Per-site table (first volume of each site, plus a noise-free re-simulation of it):

* noise: std (HU) of noisy minus noise-free image in the blood-pool interior (voxels >= 10 mm
  inside the blood pools);
* blood, myocardium: mean HU of the noisy image in the blood-pool interior and the eroded LV
  myocardium; contrast = their difference;
* edge: 10-90 % width of a planar blood/myocardium edge through the site's chain without noise
  (:mod:`fedsim_tf.data.phantom_quality`), in mm and output voxels;
* cupping: noise-free HU of a centred water cylinder (radius 40 % of the field of view) at its
  centre minus at 85 % of its radius;
* SSM fit: mean surface distance (mm) between the site's first six phantom hearts and their best
  reconstruction by the default shape model (which is built from none of them).
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from absl import app, flags
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fedsim_tf.anatomy import MMWHS_CODE_TO_INDEX, NAME_TO_INDEX  # noqa: E402
from fedsim_tf.data import phantoms  # noqa: E402
from fedsim_tf.data.phantom_quality import edge_phantom, edge_width, ssm_fit_errors, water_cylinder  # noqa: E402
from fedsim_tf.data.phantom_scan import scan  # noqa: E402
from fedsim_tf.data.scanners import site_settings  # noqa: E402
from fedsim_tf.options import common_config_from_flags  # noqa: E402
from fedsim_tf.shape.ssm import default_ssm  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("figures", True, "print the per-site image figures (costs a few noise-free simulations)")
FLAGS.set_default("phantom_small", False)


def _read(folder: Path, kind: str) -> tuple[np.ndarray, np.ndarray]:
    image = nib.load(str(folder / f"ct_train_1001_{kind}.nii.gz"))
    return np.asarray(image.dataobj).transpose(2, 1, 0), image.affine


def _site_row(folder: Path, small: bool, seed: int) -> str:
    settings = site_settings(folder.name)
    if small:
        settings = phantoms.small_settings(settings, 1)
    image, affine = _read(folder, "image")
    codes, _ = _read(folder, "label")
    labels = np.zeros(codes.shape, dtype=np.uint8)
    for code, index in MMWHS_CODE_TO_INDEX.items():
        labels[codes == code] = index
    spacing = np.linalg.norm(affine[:3, :3], axis=0)[::-1]
    interior = ndimage.distance_transform_edt(labels >= NAME_TO_INDEX["la"], sampling=spacing) >= 10.0
    myo = ndimage.binary_erosion(labels == NAME_TO_INDEX["lv_myo"])
    clean = phantoms.simulate_case(settings, 1001, seed, photons_per_pixel=float("inf")).image_hu
    noise = float(np.std(image[interior] - clean[interior]))
    blood, muscle = float(image[interior].mean()), float(image[myo].mean())

    grid = phantoms.output_grid(settings)
    rng = np.random.default_rng(0)
    edge_object, normal = edge_phantom(grid, float(np.mean(settings.iodine_mg_ml)))
    edge_image = scan(settings, [edge_object], None, rng, float("inf"))
    xyz = grid.voxel_centres()
    radius = 0.4 * min(grid.shape[1] * spacing[1], grid.shape[2] * spacing[2])
    central = (np.hypot(xyz[..., 0], xyz[..., 1]) < 0.7 * radius) & (np.abs(xyz[..., 2]) < 0.25 * settings.fov_mm[0])
    width_mm = edge_width(edge_image, grid, normal, central)
    voxel = float(np.abs(normal) @ spacing[::-1])
    cylinder = scan(settings, [water_cylinder(grid, radius)], None, rng, float("inf"))
    r = np.hypot(xyz[..., 0], xyz[..., 1])
    slab = np.abs(xyz[..., 2]) < 0.25 * settings.fov_mm[0]
    rim = slab & (np.abs(r - 0.85 * radius) < 0.05 * radius)
    cupping = float(cylinder[slab & (r < 0.1 * radius)].mean() - cylinder[rim].mean())

    hearts = [phantoms.case_heart(settings, settings.first_case + n, seed).heart.mesh for n in range(6)]
    fit = ssm_fit_errors(default_ssm(), hearts)
    return (f"{folder.name:7s} {spacing[2]:.2f}x{spacing[1]:.2f}x{spacing[0]:.2f} mm  noise {noise:5.1f} HU  "
            f"blood {blood:5.0f}  myocardium {muscle:5.0f}  contrast {blood - muscle:5.0f} HU  "
            f"edge {width_mm:4.2f} mm = {width_mm / voxel:4.2f} vox  cupping {cupping:5.1f} HU  "
            f"SSM fit {fit.mean():.2f} mm ({fit.min():.2f}-{fit.max():.2f})  "
            f"{settings.kvp:.0f} kVp, {settings.kev:.1f} keV eff., window {settings.window}, "
            f"{settings.photons_per_pixel:g} quanta/px, motion {settings.motion_mm} mm")


def main(argv: list[str]) -> None:
    del argv
    from pyronn_ops import native

    with tempfile.TemporaryDirectory(prefix="phantom-bench-") as tmp:
        common = common_config_from_flags()
        if not FLAGS.phantom_dir:
            common = dataclasses.replace(common, phantom_dir=tmp)
        start = time.monotonic()
        folders = phantoms.phantom_folders(common)
        elapsed = time.monotonic() - start
        count = sum(len(list(f.glob("*_image.nii.gz"))) for f in folders)
        peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        kernels = "native C++" if native.load().library is not None else "XLA"
        print(f"volumes: {count} ({'small' if common.phantom_small else 'default'} preset, "
              f"{common.phantom_workers} workers, pyronn_ops kernels: {kernels}), sites {', '.join(common.phantom_sites)}")
        print(f"total {elapsed:.1f} s, {elapsed / max(count, 1):.1f} s per volume (wall), "
              f"{elapsed * common.phantom_workers / max(count, 1):.1f} worker-s per volume")
        print(f"peak RSS: main process {peak_self:.0f} MiB, largest worker {peak_child:.0f} MiB")
        if FLAGS.figures:
            for folder in folders:
                print(_site_row(folder, common.phantom_small, phantoms.PHANTOM_SEED), flush=True)


if __name__ == "__main__":
    app.run(main)
