"""NIfTI I/O: round trips, orientation handling, bad files, atomic writes."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fedsim_tf.data import nifti
from fedsim_tf.data.errors import DataError
from fedsim_tf.data.nifti import read_nifti, write_nifti
from fedsim_tf.data.preprocess import to_canonical
from fedsim_tf.grid import Grid


def _oblique_grid(shape: tuple[int, int, int]) -> Grid:
    c, s = np.cos(0.3), np.sin(0.3)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([0.7, 0.45, 1.6])
    affine[:3, 3] = (-80.5, 12.25, -300.0)
    return Grid(shape, affine)


def test_round_trip_keeps_values_affine_and_spacing(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    volume = rng.integers(-1024, 2000, size=(5, 6, 7)).astype(np.int16)
    grid = _oblique_grid(volume.shape)
    path = write_nifti(tmp_path / "a_image.nii.gz", volume, grid)
    loaded, loaded_grid = read_nifti(path)
    assert loaded.dtype == np.int16 and loaded.shape == (5, 6, 7)
    np.testing.assert_array_equal(loaded, volume)
    np.testing.assert_allclose(loaded_grid.affine, grid.affine, atol=1e-5)
    np.testing.assert_allclose(loaded_grid.spacing_zyx, [1.6, 0.45, 0.7], atol=1e-6)
    # the file's own header agrees with the [z, y, x] <-> (i, j, k) convention
    img = nib.load(str(path))
    assert img.shape == (7, 6, 5)
    np.testing.assert_allclose(img.header.get_zooms(), (0.7, 0.45, 1.6), atol=1e-6)
    assert img.get_fdata()[3, 2, 1] == volume[1, 2, 3]


def test_bool_stored_as_uint8_and_dtype_override(tmp_path: Path) -> None:
    grid = Grid.centred((2, 3, 4), 10.0)
    mask = np.zeros((2, 3, 4), dtype=bool)
    mask[1, 2, 3] = True
    loaded, _ = read_nifti(write_nifti(tmp_path / "m.nii.gz", mask, grid))
    assert loaded.dtype == np.uint8 and loaded.sum() == 1 and loaded[1, 2, 3] == 1
    loaded, _ = read_nifti(write_nifti(tmp_path / "f.nii", mask, grid, dtype=np.float32))
    assert loaded.dtype == np.float32


def _ras_anatomy() -> tuple[np.ndarray, Grid]:
    volume = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    affine = np.diag([0.5, 0.75, 2.0, 1.0])
    affine[:3, 3] = (-10.0, 20.0, 30.0)
    return volume, Grid(volume.shape, affine)


def test_lps_and_permuted_storage_load_to_the_same_canonical_volume(tmp_path: Path) -> None:
    volume, grid = _ras_anatomy()
    nz, ny, nx = volume.shape
    # LPS storage: x and y voxel axes reversed; affine by hand: x = -0.5 i + (-10 + 5 * 0.5) ...
    lps_affine = np.array([[-0.5, 0, 0, -10.0 + (nx - 1) * 0.5],
                           [0, -0.75, 0, 20.0 + (ny - 1) * 0.75],
                           [0, 0, 2.0, 30.0],
                           [0, 0, 0, 1]])
    lps = volume[:, ::-1, ::-1]
    # permuted storage: NIfTI axes (i, j, k) run along world (z, x, y)
    perm_affine = np.array([[0, 0.5, 0, -10.0], [0, 0, 0.75, 20.0], [2.0, 0, 0, 30.0], [0, 0, 0, 1]])
    stored_ijk = volume.transpose(2, 1, 0).transpose(2, 0, 1)  # data[i=z, j=x, k=y]
    perm = stored_ijk.transpose(2, 1, 0)
    for name, data, affine in (("ras", volume, grid.affine), ("lps", lps, lps_affine),
                               ("perm", perm, perm_affine)):
        path = write_nifti(tmp_path / f"{name}.nii.gz", data, Grid(data.shape, affine))
        canonical, canonical_grid = to_canonical(*read_nifti(path))
        np.testing.assert_array_equal(canonical, volume, err_msg=name)
        np.testing.assert_allclose(canonical_grid.affine, grid.affine, atol=1e-5, err_msg=name)


def test_trailing_singleton_dimension_is_dropped(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.int16).reshape(4, 3, 2, 1)  # (X, Y, Z, 1)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "v.nii.gz"))
    volume, grid = read_nifti(tmp_path / "v.nii.gz")
    assert volume.shape == (2, 3, 4) and grid.shape == (2, 3, 4)
    assert volume[1, 2, 3] == data[3, 2, 1, 0]


@pytest.mark.parametrize("kind", ["missing", "garbage", "truncated", "4d", "2d", "suffix"])
def test_bad_files_raise_one_line_naming_the_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / ("x.txt" if kind == "suffix" else "x_image.nii.gz")
    if kind == "garbage":
        path.write_bytes(b"this is not gzip at all" * 20)
    elif kind == "truncated":
        good = tmp_path / "good.nii.gz"
        noise = np.random.default_rng(1).integers(-1000, 1000, (8, 8, 8)).astype(np.int16)
        write_nifti(good, noise, Grid.centred(8, 8.0))
        path.write_bytes(good.read_bytes()[:-300])
    elif kind in ("4d", "2d"):
        shape = (3, 3, 3, 2) if kind == "4d" else (3, 3)
        nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), np.eye(4)), str(path))
    with pytest.raises(DataError, match=re.escape(str(path))) as info:
        read_nifti(path)
    assert len(info.value.problems) == 1 and "\n" not in str(info.value)
    assert str(info.value).startswith(str(path))


def test_corrupt_gzip_payload_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "c_image.nii.gz"
    write_nifti(path, np.zeros((8, 8, 8), np.int16), Grid.centred(8, 8.0))
    raw = bytearray(gzip.decompress(path.read_bytes()))
    compressed = bytearray(gzip.compress(bytes(raw)))
    compressed[-8] ^= 0xFF  # break the CRC in the gzip trailer
    path.write_bytes(bytes(compressed))
    with pytest.raises(DataError, match="unreadable NIfTI"):
        read_nifti(path)


def test_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grid = Grid.centred(4, 4.0)
    target = write_nifti(tmp_path / "keep.nii.gz", np.ones((4, 4, 4), np.int16), grid)
    before = target.read_bytes()

    def failing_save(img: nib.Nifti1Image, name: str) -> None:
        Path(name).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nifti.nib, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_nifti(target, np.zeros((4, 4, 4), np.int16), grid)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.nii.gz"]
    with pytest.raises(ValueError, match="does not match grid"):
        write_nifti(tmp_path / "bad.nii.gz", np.zeros((3, 4, 4)), grid)
    assert not (tmp_path / "bad.nii.gz").exists()
