"""Preprocessed-case cache: content/settings keys, atomic entries, corrupt entries rebuilt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedsim_tf.data import site as site_module
from fedsim_tf.data.cache import CaseCache, cache_key
from fedsim_tf.data.labels import IMAGECHD_TABLE, MMWHS_TABLE
from fedsim_tf.data.layouts import scan_site
from fedsim_tf.data.preprocess import PreprocessConfig, preprocess_case
from fedsim_tf.data.site import load_site

from .synthetic import diag_grid, toy_case, write_mmwhs_case

CONFIG = PreprocessConfig(spacing_mm=1.0, grid_size=8, coarse_size=4)


def test_key_depends_on_content_and_settings_not_location(tmp_path: Path) -> None:
    write_mmwhs_case(tmp_path / "a", "ct_train_1001")
    files = scan_site(tmp_path / "a")[0]
    key = cache_key(files, CONFIG, MMWHS_TABLE, "error")
    (tmp_path / "a").rename(tmp_path / "b")
    moved = scan_site(tmp_path / "b")[0]
    assert cache_key(moved, CONFIG, MMWHS_TABLE, "error") == key
    assert cache_key(moved, PreprocessConfig(1.0, 16, 4), MMWHS_TABLE, "error") != key
    assert cache_key(moved, CONFIG, IMAGECHD_TABLE, "error") != key
    assert cache_key(moved, CONFIG, MMWHS_TABLE, "background") != key
    data = bytearray(moved.image_path.read_bytes())
    data[-1] ^= 1  # one flipped bit (the file need not stay valid for hashing)
    moved.image_path.write_bytes(bytes(data))
    assert cache_key(moved, CONFIG, MMWHS_TABLE, "error") != key


def _count_preprocessing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def counting(*args: object, **kwargs: object):
        calls.append(str(args[4]))
        return preprocess_case(*args, **kwargs)

    monkeypatch.setattr(site_module, "preprocess_case", counting)
    return calls


def test_hit_miss_and_corrupt_entry_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, cache_dir = tmp_path / "site", tmp_path / "cache"
    write_mmwhs_case(data, "ct_train_1001")
    write_mmwhs_case(data, "ct_test_2001", labelled=False)
    calls = _count_preprocessing(monkeypatch)
    first = load_site(data, "mmwhs", CONFIG, cache_dir, progress=None)
    assert sorted(calls) == ["ct_test_2001", "ct_train_1001"]
    entries = sorted(cache_dir.glob("*.npz"))
    assert len(entries) == 2 and not list(cache_dir.glob(".*"))

    lines: list[str] = []
    second = load_site(data, "mmwhs", CONFIG, cache_dir, name="CT20", progress=lines.append)
    assert len(calls) == 2  # hit: nothing recomputed
    assert lines[0].startswith("site CT20: 1/2 ct_test_2001 (unlabelled, cache,")
    assert lines[1].startswith("site CT20: 2/2 ct_train_1001 (labelled, cache,")
    for case_id, case in first.cases.items():
        again = second.cases[case_id]
        np.testing.assert_array_equal(again.image, case.image)
        np.testing.assert_array_equal(again.coarse, case.coarse)
        np.testing.assert_allclose(again.grid.affine, case.grid.affine)
        assert (again.label is None) == (case.label is None) and again.image_path == case.image_path
    np.testing.assert_array_equal(second.cases["ct_train_1001"].heart_mask,
                                  first.cases["ct_train_1001"].heart_mask)
    assert second.unlabelled_ids == ["ct_test_2001"] and second.labelled_ids == ["ct_train_1001"]

    load_site(data, "mmwhs", PreprocessConfig(1.0, 8, 2), cache_dir, progress=None)  # settings miss
    assert len(calls) == 4

    key = cache_key(scan_site(data)[1], CONFIG, MMWHS_TABLE, "error")
    entry = CaseCache(cache_dir).entry_path(key)
    entry.write_bytes(entry.read_bytes()[:100])  # truncated entry
    third = load_site(data, "mmwhs", CONFIG, cache_dir, progress=None)
    assert calls[-1] == "ct_train_1001" and len(calls) == 5
    np.testing.assert_array_equal(third.cases["ct_train_1001"].label, first.cases["ct_train_1001"].label)
    assert CaseCache(cache_dir).load(key, scan_site(data)[1]) is not None  # rebuilt entry is valid

    # changed content (same case, other spacing in the header): miss for that case only
    write_mmwhs_case(data, "ct_train_1001", grid=diag_grid(toy_case()[0].shape, (0.9, 0.8, 1.0)))
    load_site(data, "mmwhs", CONFIG, cache_dir, progress=None)
    assert calls[5:] == ["ct_train_1001"]
