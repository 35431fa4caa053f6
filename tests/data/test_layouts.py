"""Site folder scanning and file-name helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsim_tf.data.errors import DataError
from fedsim_tf.data.layouts import (
    find_cases,
    imagechd_filenames,
    layout_filenames,
    mmwhs_filenames,
    scan_site,
)


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b"")


def test_filename_helpers() -> None:
    assert mmwhs_filenames(1001) == ("ct_train_1001_image.nii.gz", "ct_train_1001_label.nii.gz")
    assert mmwhs_filenames(2001, "test")[0] == "ct_test_2001_image.nii.gz"
    assert imagechd_filenames(1001) == ("ct_1001_image.nii.gz", "ct_1001_label.nii.gz")
    assert layout_filenames("imagechd", 7) == ("ct_7_image.nii.gz", "ct_7_label.nii.gz")
    with pytest.raises(ValueError, match="layout"):
        layout_filenames("dicom", 1)


@pytest.mark.parametrize("layout", ["mmwhs", "imagechd"])
def test_scan_pairs_files_keeps_unlabelled_and_sorts_naturally(tmp_path: Path, layout: str) -> None:
    names = [layout_filenames(layout, n) for n in (1010, 1002)]
    _touch(tmp_path, *names[0], *names[1], "ct_test_99_image.nii", "README.txt", ".hidden_image.nii.gz")
    (tmp_path / "sub_image.nii.gz").mkdir()
    cases = scan_site(tmp_path, layout)
    # natural order: "test" < "train" as text; numbers before text; 1002 < 1010 as numbers
    expected = (["ct_test_99", "ct_train_1002", "ct_train_1010"] if layout == "mmwhs"
                else ["ct_1002", "ct_1010", "ct_test_99"])
    assert [c.case_id for c in cases] == expected
    by_id = {c.case_id: c for c in cases}
    first = by_id[expected[1] if layout == "mmwhs" else expected[0]]
    assert first.image_path == tmp_path / names[1][0] and first.label_path == tmp_path / names[1][1]
    assert by_id["ct_test_99"].label_path is None and not by_id["ct_test_99"].labelled


def test_all_naming_problems_reported_together(tmp_path: Path) -> None:
    _touch(tmp_path, "a_image.nii.gz", "a_image.nii", "b_label.nii.gz", "scan01.nii.gz", "c_image.nii.gz")
    cases, problems = find_cases(tmp_path, "mmwhs")
    assert [c.case_id for c in cases] == ["a", "c"]
    assert len(problems) == 3
    assert any(p.startswith(str(tmp_path / "a_image.nii")) and "duplicate image" in p for p in problems)
    assert any(p.startswith(str(tmp_path / "b_label.nii.gz")) and "without an image" in p for p in problems)
    assert any(p.startswith(str(tmp_path / "scan01.nii.gz")) and "matches neither" in p for p in problems)
    with pytest.raises(DataError, match="duplicate image file for case a") as info:
        scan_site(tmp_path)
    assert info.value.problems == problems


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty site folder") as info:
        scan_site(tmp_path)
    assert str(info.value).startswith(str(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        scan_site(tmp_path / "nope")
    _touch(tmp_path, "file")
    with pytest.raises(DataError, match="not a folder"):
        scan_site(tmp_path / "file")
