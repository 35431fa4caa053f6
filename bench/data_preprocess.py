"""Figures for the real-data layer: read, preprocess and cache one MM-WHS-sized CT volume.

Prints wall times (s) for a synthetic 512 x 512 x 224 int16 volume at 0.4 x 0.4 x 0.6 mm, written
as a compressed NIfTI pair in a temporary folder, then loaded twice with a cache (miss, hit).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/<file>.py`

from fedsim_tf.data.labels import MMWHS_TABLE, encode_labels
from fedsim_tf.data.layouts import mmwhs_filenames
from fedsim_tf.data.nifti import read_nifti, write_nifti
from fedsim_tf.data.preprocess import PreprocessConfig
from fedsim_tf.data.site import load_site
from fedsim_tf.grid import Grid


def main() -> None:
    """Print the timings."""
    shape = (224, 512, 512)
    grid = Grid(shape, np.diag([0.4, 0.4, 0.6, 1.0]))
    rng = np.random.default_rng(0)
    image = rng.normal(0.0, 30.0, shape).astype(np.int16)
    label = np.zeros(shape, np.uint8)
    label[80:150, 200:320, 180:300] = 3
    image[label > 0] += 300
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "site"
        names = mmwhs_filenames(1001)
        started = time.perf_counter()
        write_nifti(folder / names[0], image, grid)
        write_nifti(folder / names[1], encode_labels(label, MMWHS_TABLE), grid)
        print(f"write pair (.nii.gz): {time.perf_counter() - started:.2f} s")
        started = time.perf_counter()
        read_nifti(folder / names[0])
        print(f"read image: {time.perf_counter() - started:.2f} s")
        for grid_size in (64, 128):
            config = PreprocessConfig(spacing_mm=160.0 / grid_size, grid_size=grid_size)
            for attempt in ("miss", "hit"):
                started = time.perf_counter()
                load_site(folder, "mmwhs", config, Path(tmp) / "cache", progress=None)
                print(f"load_site grid {grid_size} cache {attempt}: {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
