"""Small synthetic cardiac-like volumes and site folders for the data-layer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedsim_tf.data.labels import MMWHS_TABLE, encode_labels
from fedsim_tf.data.nifti import write_nifti
from fedsim_tf.grid import Grid


def diag_grid(shape_zyx: tuple[int, int, int], spacing_xyz: tuple[float, float, float],
              origin_xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Grid:
    """Axis-aligned RAS grid with the given spacing (x, y, z) and origin (world mm)."""
    affine = np.eye(4)
    affine[:3, :3] = np.diag(spacing_xyz)
    affine[:3, 3] = origin_xyz
    return Grid(shape_zyx, affine)


def toy_case(shape_zyx: tuple[int, int, int] = (20, 24, 28)) -> tuple[np.ndarray, np.ndarray]:
    """``(image HU int16, label indices uint8)``: air, a 0 HU body box, a 300 HU blood box
    labelled 3 (z 6..11, y 8..13, x 10..15) and a 100 HU myocardium slab labelled 1 next to it."""
    image = np.full(shape_zyx, -1000, dtype=np.int16)
    image[2:-2, 2:-2, 2:-2] = 0
    label = np.zeros(shape_zyx, dtype=np.uint8)
    image[6:12, 8:14, 10:16] = 300
    label[6:12, 8:14, 10:16] = 3
    image[6:12, 8:14, 16:18] = 100
    label[6:12, 8:14, 16:18] = 1
    return image, label


def write_mmwhs_case(folder: Path, case_id: str, grid: Grid | None = None,
                     labelled: bool = True) -> tuple[Path, Path | None]:
    """Write :func:`toy_case` as ``<case_id>_image.nii.gz`` (+ MM-WHS coded label)."""
    image, label = toy_case()
    grid = grid or diag_grid(image.shape, (0.8, 0.8, 1.0))
    image_path = write_nifti(folder / f"{case_id}_image.nii.gz", image, grid)
    if not labelled:
        return image_path, None
    label_path = write_nifti(folder / f"{case_id}_label.nii.gz", encode_labels(label, MMWHS_TABLE), grid)
    return image_path, label_path
