"""Benchmark: generate the phantom hospitals and print time, peak memory and per-site HU/noise.

    python bench/phantoms.py                       # full default set: 88 volumes at 128^3, 2 workers
    python bench/phantoms.py --small --volumes_per_site 1   # reduced size (64^3, 1 volume per site)

Per-site table (first volume of each site): mean and std of the HU in the blood-pool interior
(voxels >= 10 mm inside the blood pools; its std is mostly noise), mean HU of the eroded
myocardium, and the configured blood-HU range.
"""

from __future__ import annotations

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
from fedsim_tf.data.scanners import SITE_NAMES, site_settings  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("small", False, "reduced size: the --small preset (64^3)")
flags.DEFINE_integer("volumes_per_site", None, "with --small: volumes per site")
flags.DEFINE_integer("workers", 2, "parallel worker processes")
flags.DEFINE_integer("seed", 0, "data-set seed")
flags.DEFINE_string("out", None, "output folder (default: a temporary folder, deleted afterwards)")


def _site_row(folder: Path) -> str:
    settings = site_settings(folder.name)
    image_img = nib.load(str(folder / "ct_train_1001_image.nii.gz"))
    image = np.asarray(image_img.dataobj).transpose(2, 1, 0).astype(np.float64)
    codes = np.asarray(nib.load(str(folder / "ct_train_1001_label.nii.gz")).dataobj).transpose(2, 1, 0)
    labels = np.zeros(codes.shape, dtype=np.uint8)
    for code, index in MMWHS_CODE_TO_INDEX.items():
        labels[codes == code] = index
    spacing = np.linalg.norm(image_img.affine[:3, :3], axis=0)[::-1]
    interior = ndimage.distance_transform_edt(labels >= NAME_TO_INDEX["la"], sampling=spacing) >= 10.0
    myo = ndimage.binary_erosion(labels == NAME_TO_INDEX["lv_myo"])
    lo, hi = settings.blood_hu_range
    return (f"{folder.name:8s} spacing {spacing[0]:.3f}x{spacing[1]:.3f}x{spacing[2]:.3f} mm  "
            f"blood {image[interior].mean():6.1f} +- {image[interior].std():5.1f} HU (range {lo:.0f}-{hi:.0f})  "
            f"myocardium {image[myo].mean():6.1f} HU  window {settings.window}  photons {settings.photons_per_pixel:g}")


def main(argv: list[str]) -> None:
    del argv
    with tempfile.TemporaryDirectory(prefix="phantom-bench-") as tmp:
        out = Path(FLAGS.out or tmp)
        start = time.monotonic()
        folders = phantoms.ensure_phantom_hospitals(
            out, small=FLAGS.small, seed=FLAGS.seed, workers=FLAGS.workers, volumes_per_site=FLAGS.volumes_per_site,
        )
        elapsed = time.monotonic() - start
        count = sum(len(list(f.glob("*_image.nii.gz"))) for f in folders)
        peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"volumes: {count} ({'small' if FLAGS.small else 'default'} preset, {FLAGS.workers} workers), "
              f"sites {', '.join(SITE_NAMES)}")
        print(f"total {elapsed:.1f} s, {elapsed / max(count, 1):.1f} s per volume (wall), "
              f"{elapsed * FLAGS.workers / max(count, 1):.1f} worker-s per volume")
        print(f"peak RSS: main process {peak_self:.0f} MiB, largest worker {peak_child:.0f} MiB")
        for folder in folders:
            print(_site_row(folder))


if __name__ == "__main__":
    app.run(main)
