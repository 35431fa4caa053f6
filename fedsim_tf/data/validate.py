"""Checks of a site folder that report every problem at once, one line per problem naming the file.

Per case (:func:`read_case`): unreadable/corrupt or non-3-D files, non-finite (NaN/inf) image
voxels, image/label shape or affine mismatch, label values missing from the label table (with
``on_unknown="error"``) and labels without any heart voxel. Per folder
(:func:`fedsim_tf.data.layouts.find_cases`): missing or empty folder, label without image,
duplicates and unrecognised NIfTI names. An image without a label is fine (unlabelled case).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from nibabel.orientations import aff2axcodes, io_orientation

from fedsim_tf.data.errors import DataError
from fedsim_tf.data.labels import LabelTable, default_table, remap_labels
from fedsim_tf.data.layouts import CaseFiles, find_cases
from fedsim_tf.data.nifti import read_nifti
from fedsim_tf.grid import Grid

# Image and label affines may differ by header rounding only.
AFFINE_ATOL_MM = 1e-3


@dataclass(frozen=True)
class RawCase:
    """A checked case as stored on disk.

    Attributes:
        files: its files.
        image: ``(Z, Y, X)`` HU image, stored voxel order.
        label: ``(Z, Y, X)`` uint8 structure indices ``0..7`` on the same grid, or ``None``.
        grid: grid of both volumes.
    """

    files: CaseFiles
    image: np.ndarray
    label: np.ndarray | None
    grid: Grid


@dataclass(frozen=True)
class CaseSummary:
    """What ``python -m fedsim_tf.data.inspect`` prints for a case.

    Attributes:
        case_id: case id.
        shape_ras: voxels along the canonical RAS+ axes (x: R, y: A, z: S) the loaders reorient to.
        spacing_ras: voxel size in mm along the same axes.
        stored_axes: orientation codes of the stored voxel axes ``(i, j, k)`` (e.g. ``("L", "P", "S")``:
            ``i`` runs towards the patient's left).
        hu_range: ``(min, max)`` image value.
        labels_present: structure indices ``1..7`` present, or ``None`` when unlabelled.
    """

    case_id: str
    shape_ras: tuple[int, int, int]
    spacing_ras: tuple[float, float, float]
    stored_axes: tuple[str, str, str]
    hu_range: tuple[float, float]
    labels_present: tuple[int, ...] | None

    @classmethod
    def of(cls, case: RawCase) -> "CaseSummary":
        """Summary of a checked case."""
        present = None if case.label is None else tuple(int(v) for v in np.unique(case.label) if v)
        ornt = io_orientation(case.grid.affine)  # stored axis i/j/k -> (world axis, flip)
        shape_ijk = case.grid.shape[::-1]
        spacing_ijk = case.grid.spacing_zyx[::-1]
        shape, spacing = [0, 0, 0], [0.0, 0.0, 0.0]
        for stored, (world, _) in enumerate(ornt):
            shape[int(world)], spacing[int(world)] = int(shape_ijk[stored]), float(spacing_ijk[stored])
        return cls(case.files.case_id, tuple(shape), tuple(spacing), tuple(aff2axcodes(case.grid.affine)),
                   (float(case.image.min()), float(case.image.max())), present)


def _read(path: os.PathLike[str], problems: list[str]) -> tuple[np.ndarray, Grid] | None:
    try:
        return read_nifti(path)
    except DataError as err:
        problems.extend(err.problems)
        return None


def read_case(
    files: CaseFiles, table: LabelTable, on_unknown: str = "error"
) -> tuple[RawCase | None, list[str]]:
    """Read and check one case.

    Args:
        files: the case's files.
        table: label table of the site.
        on_unknown: stray label values: ``"error"`` (a problem) or ``"background"``.

    Returns:
        ``(case, problems)``: the case with remapped labels when there is no problem, else
        ``(None, problems)`` with every problem found.
    """
    problems: list[str] = []
    image_read = _read(files.image_path, problems)
    if image_read is not None:
        bad = int(np.count_nonzero(~np.isfinite(image_read[0])))
        if bad:
            problems.append(f"{files.image_path}: image has {bad} non-finite voxels (NaN/inf)")
    if files.label_path is None:
        if problems or image_read is None:
            return None, problems
        return RawCase(files, image_read[0], None, image_read[1]), problems
    label_read = _read(files.label_path, problems)
    if label_read is None:
        return None, problems
    label = None
    try:
        label = remap_labels(label_read[0], table, on_unknown, source=files.label_path)
    except DataError as err:
        problems.extend(err.problems)
    if label is not None and not label.any():
        problems.append(f"{files.label_path}: label has no heart-structure voxels")
    if image_read is not None:
        (image, grid), label_grid = image_read, label_read[1]
        if label_read[0].shape != image.shape:
            problems.append(f"{files.label_path}: shape (Z, Y, X) {label_read[0].shape} does not match "
                            f"image {files.image_path.name} {image.shape}")
        elif not np.allclose(label_grid.affine, grid.affine, rtol=0, atol=AFFINE_ATOL_MM):
            problems.append(f"{files.label_path}: affine does not match image {files.image_path.name} "
                            f"(max difference {np.abs(label_grid.affine - grid.affine).max():.4g} mm)")
    if problems or image_read is None or label is None:
        return None, problems
    return RawCase(files, image_read[0], label, image_read[1]), problems


def inspect_site(
    folder: str | os.PathLike[str],
    layout: str = "mmwhs",
    table: LabelTable | None = None,
    on_unknown: str = "error",
) -> tuple[list[CaseSummary], list[str]]:
    """Check every case of a site folder.

    Args:
        folder: site folder.
        layout: ``"mmwhs"`` or ``"imagechd"``.
        table: label table; default :func:`fedsim_tf.data.labels.default_table` of ``layout``.
        on_unknown: stray label values: ``"error"`` or ``"background"``.

    Returns:
        ``(summaries of the good cases, all problems)``.
    """
    table = table or default_table(layout)
    files, problems = find_cases(folder, layout)
    summaries: list[CaseSummary] = []
    for case_files in files:
        case, case_problems = read_case(case_files, table, on_unknown)
        problems.extend(case_problems)
        if case is not None:
            summaries.append(CaseSummary.of(case))
    return summaries, problems


def validate_site(
    folder: str | os.PathLike[str],
    layout: str = "mmwhs",
    table: LabelTable | None = None,
    on_unknown: str = "error",
) -> list[str]:
    """All problems of a site folder, one line each naming the file (empty list: all good)."""
    return inspect_site(folder, layout, table, on_unknown)[1]
