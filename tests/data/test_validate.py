"""Bad-input handling: every problem of a folder at once, one line naming the file; CLI exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fedsim_tf.data.errors import DataError
from fedsim_tf.data.labels import MMWHS_TABLE, encode_labels
from fedsim_tf.data.nifti import write_nifti
from fedsim_tf.data.preprocess import PreprocessConfig
from fedsim_tf.data.site import load_site
from fedsim_tf.data.validate import inspect_site, validate_site
from fedsim_tf.grid import Grid

from .synthetic import diag_grid, toy_case, write_mmwhs_case

REPO = Path(__file__).resolve().parents[2]
CONFIG = PreprocessConfig(spacing_mm=1.0, grid_size=8, coarse_size=4)


def _bad_site(folder: Path) -> dict[str, str]:
    """A site with two good cases and one problem per other case; returns file -> expected text."""
    image, label = toy_case()
    grid = diag_grid(image.shape, (0.8, 0.8, 1.0))
    codes = encode_labels(label, MMWHS_TABLE)
    write_mmwhs_case(folder, "ct_train_1001")
    write_mmwhs_case(folder, "ct_test_2001", labelled=False)
    expected: dict[str, str] = {}

    def case(n: int, img: np.ndarray, lab: np.ndarray | None, lab_grid=grid) -> tuple[Path, Path]:
        ip = write_nifti(folder / f"ct_train_{n}_image.nii.gz", img, grid)
        lp = folder / f"ct_train_{n}_label.nii.gz"
        if lab is not None:
            write_nifti(lp, lab, lab_grid)
        return ip, lp

    _, lp = case(1002, image, codes[:, :, :-1], diag_grid(codes[:, :, :-1].shape, (0.8, 0.8, 1.0)))
    expected[str(lp)] = "does not match image"
    _, lp = case(1003, image, codes, diag_grid(image.shape, (0.8, 0.8, 1.2)))
    expected[str(lp)] = "affine does not match"
    stray = codes.copy()
    stray[0, 0, 0] = 421
    _, lp = case(1004, image, stray)
    expected[str(lp)] = "unknown label values 421"
    nan_image = image.astype(np.float32)
    nan_image[1, 1, 1], nan_image[2, 2, 2] = np.nan, np.inf
    ip, _ = case(1005, nan_image, codes)
    expected[str(ip)] = "2 non-finite voxels"
    ip = folder / "ct_train_1006_image.nii.gz"
    ip.write_bytes(b"\x1f\x8b\x08\x00garbage")
    write_nifti(folder / "ct_train_1006_label.nii.gz", codes, grid)
    expected[str(ip)] = "unreadable NIfTI"
    _, lp = case(1007, image, None)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.int16), grid.affine), str(lp))
    expected[str(lp)] = "expected a 3-D volume"
    lp = write_nifti(folder / "ct_train_1008_label.nii.gz", codes, grid)
    expected[str(lp)] = "label file without an image"
    _, lp = case(1009, image, np.zeros_like(codes))
    expected[str(lp)] = "no heart-structure voxels"
    return expected


def _check_problems(problems: list[str], expected: dict[str, str]) -> None:
    assert len(problems) == len(expected)
    for path, text in expected.items():
        matching = [p for p in problems if p.startswith(path + ":")]
        assert len(matching) == 1 and text in matching[0], (path, problems)
    assert all("\n" not in p for p in problems)


def test_all_problems_of_a_folder_reported_together(tmp_path: Path) -> None:
    expected = _bad_site(tmp_path)
    _check_problems(validate_site(tmp_path, "mmwhs"), expected)
    summaries, _ = inspect_site(tmp_path, "mmwhs")
    assert [s.case_id for s in summaries] == ["ct_test_2001", "ct_train_1001"]
    # the stray-value policy can turn that problem off
    del expected[str(tmp_path / "ct_train_1004_label.nii.gz")]
    _check_problems(validate_site(tmp_path, "mmwhs", on_unknown="background"), expected)


def test_load_site_raises_with_every_problem_and_writes_nothing_partial(tmp_path: Path) -> None:
    data, cache = tmp_path / "data", tmp_path / "cache"
    expected = _bad_site(data)
    before = sorted(p.name for p in data.iterdir())
    with pytest.raises(DataError, match="label file without an image") as info:
        load_site(data, "mmwhs", CONFIG, cache, progress=None)
    _check_problems(info.value.problems, expected)
    assert sorted(p.name for p in data.iterdir()) == before
    assert not [p for p in cache.iterdir() if not p.name.endswith(".npz")]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "fedsim_tf.data.inspect", *args], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=120)


def test_cli_exit_codes_and_summary(tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    write_mmwhs_case(good, "ct_train_1001")
    write_mmwhs_case(good, "ct_test_2001", labelled=False)
    result = _cli(f"--data_dir={good}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # Stored (Z, Y, X) = (20, 24, 28) on an axis-aligned RAS grid of 0.8 x 0.8 x 1 mm (x, y, z).
    assert lines[1] == ("ct_train_1001: 28x24x20 voxels (RxAxS), spacing 0.8x0.8x1 mm, stored axes RAS, "
                        "HU -1000..300, labels 1,3")
    assert lines[0].endswith("unlabelled") and lines[-1].startswith("2 case(s) OK")

    expected = _bad_site(bad)
    result = _cli(f"--data_dir={bad}", "--layout=mmwhs")
    assert result.returncode == 2
    assert all(line.startswith("error: ") for line in result.stderr.splitlines())
    problems = [line[len("error: "):] for line in result.stderr.splitlines() if line.startswith(f"error: {bad}/")]
    _check_problems(problems, expected)
    missing = _cli(f"--data_dir={tmp_path / 'missing'}")
    assert missing.returncode == 2 and missing.stderr == f"error: {tmp_path / 'missing'}: folder does not exist\n"


def test_cli_prints_sizes_in_the_canonical_frame_of_a_reoriented_volume(tmp_path: Path) -> None:
    # Stored slice axis first, LPS in-plane (a typical DICOM-converted ImageCHD volume): voxel axis i runs
    # towards Superior in 1.6 mm steps, j towards Posterior and k towards the patient's Left in 0.4 mm
    # steps. Stored array [k, j, i] = (14, 12, 10).
    affine = np.zeros((4, 4))
    affine[2, 0], affine[1, 1], affine[0, 2], affine[3, 3] = 1.6, -0.4, -0.4, 1.0
    grid = Grid((14, 12, 10), affine)
    image = np.zeros((14, 12, 10), np.int16)
    image[3:6, 4:8, 2:5] = 300
    write_nifti(tmp_path / "ct_1001_image.nii.gz", image, grid)
    result = _cli(f"--data_dir={tmp_path}", "--layout=imagechd")
    assert result.returncode == 0, result.stderr
    # Canonical x (R) comes from k (14 voxels of 0.4 mm), y (A) from j (12 of 0.4), z (S) from i (10 of 1.6).
    assert result.stdout.splitlines()[0] == ("ct_1001: 14x12x10 voxels (RxAxS), spacing 0.4x0.4x1.6 mm, "
                                             "stored axes SPL, HU 0..300, unlabelled")


def test_cli_imagechd_with_json_table(tmp_path: Path) -> None:
    image, label = toy_case()
    grid = diag_grid(image.shape, (0.8, 0.8, 1.0))
    write_nifti(tmp_path / "site" / "ct_1001_image.nii.gz", image, grid)
    write_nifti(tmp_path / "site" / "ct_1001_label.nii.gz", np.where(label == 3, 20, label), grid)
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"labels": {"1": "lv_myo", "20": "lv"}}))
    base = [f"--data_dir={tmp_path / 'site'}", "--layout=imagechd"]
    assert _cli(*base).returncode == 2  # 20 is not an ImageCHD value
    result = _cli(*base, f"--label_table={table}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].endswith("labels 1,3")
