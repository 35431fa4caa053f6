"""Tiny site folders for the stage tests: labelled MM-WHS-style cases of a bright blood ball (LV blood
pool) in a myocardium shell, in noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedsim_tf.data.layouts import case_filenames
from fedsim_tf.data.nifti import write_nifti
from fedsim_tf.grid import Grid

BLOOD, MYOCARDIUM = 3, 1  # structure indices of the LV blood pool and the LV myocardium
MMWHS_CODES = {BLOOD: 500, MYOCARDIUM: 205}
BLOOD_HU, MYOCARDIUM_HU, BACKGROUND_HU = 350.0, 100.0, -100.0


def write_site(folder: Path, count: int, seed: int = 5, codes: dict[int, int] = MMWHS_CODES, stray_in: str = "",
               prefix: str = "ct_train_", myocardium_hu: float = MYOCARDIUM_HU) -> None:
    """``count`` labelled cases ``<prefix>100N`` on a 24^3 grid of 5 mm voxels (120 mm field of view).

    Args:
        folder: the site folder (created).
        count: number of cases.
        seed: their random draw (ball centres, noise).
        codes: raw label value of each structure index.
        stray_in: the case id that also carries a few voxels of the off-table value 421.
        prefix: case id prefix.
        myocardium_hu: mean HU of the myocardium shell (blood: :data:`BLOOD_HU`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    grid = Grid.centred(24, 120.0)
    z, y, x = np.mgrid[:24, :24, :24]
    for number in range(1001, 1001 + count):
        case_id = f"{prefix}{number}"
        centre = rng.uniform(10, 14, size=3)
        radius2 = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2
        indices = np.where(radius2 <= 16, BLOOD, np.where(radius2 <= 36, MYOCARDIUM, 0))
        image = np.select([indices == BLOOD, indices == MYOCARDIUM], [BLOOD_HU, myocardium_hu], BACKGROUND_HU)
        image = image + rng.normal(0, 30, indices.shape)
        label = np.zeros(indices.shape, np.int16)
        for index, code in codes.items():
            label[indices == index] = code
        if case_id == stray_in:
            label[0, 0, :4] = 421
        image_name, label_name = case_filenames(case_id)
        write_nifti(folder / image_name, image.astype(np.int16), grid)
        write_nifti(folder / label_name, label, grid)
