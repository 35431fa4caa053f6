"""Read and write NIfTI volumes as ``[z, y, x]`` arrays plus a :class:`~fedsim_tf.grid.Grid`.

The array is returned in the *stored* voxel order (no reorientation; see
:mod:`fedsim_tf.data.preprocess` for the canonical RAS frame): NIfTI stores ``data[i, j, k]`` with
``i`` = x index, so the in-memory array is ``data.transpose(2, 1, 0)``. The grid's affine is the
file's best affine (sform if set, else qform), so spacing, flips and rotations are preserved.
Compressed files are decompressed in full, so a corrupt gzip stream (bad CRC, truncation) is
always detected. Trailing singleton dimensions (e.g. ``(X, Y, Z, 1)``) are dropped; anything else that is not 3-D
is an error.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from fedsim_tf.atomic import atomic_path
from fedsim_tf.data.errors import DataError
from fedsim_tf.grid import Grid

NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")

_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, ImageFileError, HeaderDataError)


def _check_suffix(path: Path) -> None:
    if not path.name.endswith(NIFTI_SUFFIXES):
        raise DataError(f"{path}: not a NIfTI file name (expected .nii.gz or .nii)")


def read_nifti(path: str | os.PathLike[str]) -> tuple[np.ndarray, Grid]:
    """Read a 3-D NIfTI volume.

    Args:
        path: a ``.nii.gz`` or ``.nii`` file.

    Returns:
        ``(array, grid)``: ``array`` of shape ``(Z, Y, X)`` in the file's stored dtype (scaling
        slope/intercept applied when present, which gives floats), in stored voxel order;
        ``grid`` with ``grid.shape == array.shape`` and the file's affine (mm).

    Raises:
        DataError: one line naming the file when it is missing, unreadable (corrupt gzip, not a
            NIfTI), not 3-D or has a singular/non-finite affine.
    """
    path = Path(path)
    _check_suffix(path)
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    try:
        if path.name.endswith(".gz"):
            # Decompress the whole stream ourselves so the gzip CRC is always verified.
            with gzip.open(path, "rb") as handle:
                img = nib.Nifti1Image.from_bytes(handle.read())
        else:
            img = nib.load(str(path))
        data = np.array(img.dataobj)
        affine = np.asarray(img.affine, dtype=np.float64)
    except _READ_ERRORS as err:
        raise DataError(f"{path}: unreadable NIfTI file ({type(err).__name__}: {err})") from err
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{path}: expected a 3-D volume, got array shape {data.shape}")
    volume = np.ascontiguousarray(data.transpose(2, 1, 0))
    try:
        grid = Grid(volume.shape, affine)
    except ValueError as err:
        raise DataError(f"{path}: invalid affine ({err})") from err
    return volume, grid


def write_nifti(
    path: str | os.PathLike[str],
    array: np.ndarray,
    grid: Grid,
    dtype: np.dtype | type | str | None = None,
) -> Path:
    """Write a ``[z, y, x]`` volume atomically (temporary name in the same folder, then rename).

    Args:
        path: destination ``.nii.gz`` (compressed) or ``.nii``; parent folders are created.
        array: ``(Z, Y, X)`` volume; must equal ``grid.shape``. Boolean arrays are stored as uint8.
        grid: voxel grid; its affine is written as both sform and qform (code "scanner"),
            units mm.
        dtype: on-disk dtype; default: the array's dtype.

    Returns:
        The destination path.

    Raises:
        ValueError: on a non-NIfTI file name or a shape that does not match the grid.
    """
    path = Path(path)
    _check_suffix(path)
    array = np.asarray(array)
    if array.shape != grid.shape:
        raise ValueError(f"{path}: array shape {array.shape} does not match grid shape {grid.shape}")
    if dtype is None:
        out_dtype = np.dtype(np.uint8) if array.dtype == bool else array.dtype
    else:
        out_dtype = np.dtype(dtype)
    data = np.ascontiguousarray(array.transpose(2, 1, 0)).astype(out_dtype, copy=False)
    img = nib.Nifti1Image(data, grid.affine)
    img.header.set_data_dtype(out_dtype)
    img.header.set_xyzt_units("mm")
    img.set_sform(grid.affine, code="scanner")
    img.set_qform(grid.affine, code="scanner")
    with atomic_path(path, suffix=".nii.gz" if path.name.endswith(".nii.gz") else ".nii") as temporary:
        nib.save(img, temporary)
    return path
