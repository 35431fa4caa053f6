"""Splits: Table 1 sizes, disjointness, fold rotation, determinism, split-file reuse."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from fedsim_tf.data.errors import DataError
from fedsim_tf.data.splits import (
    fold_split,
    label_sizes,
    load_or_create_splits,
    make_splits,
    split_sizes,
)


def _ids(n: int) -> list[str]:
    return [f"ct_{1001 + i}" for i in range(n)]


@pytest.mark.parametrize("site, n, sizes, labels", [
    ("CT20", 20, (12, 4, 4), (4, 8)),
    ("CT34LC", 34, (20, 7, 7), (6, 12)),
    ("CT34MC", 34, (20, 7, 7), (6, 12)),
    ("other", 30, (18, 6, 6), (5, 11)),  # 0.3 * 18 = 5.4, 0.6 * 18 = 10.8
])
def test_table1_sizes_and_disjoint_folds(site: str, n: int, sizes: tuple, labels: tuple) -> None:
    splits = make_splits(_ids(n), site)
    assert tuple(splits["label_sizes"]) == labels
    assert split_sizes(n) == dict(zip(("train", "val", "test"), sizes))
    tested: Counter[str] = Counter()
    for f in range(5):
        for size in labels:
            part = fold_split(splits, f, size)
            assert [len(part[k]) for k in ("val", "test")] == list(sizes[1:])
            assert len(part["train_labelled"]) == size
            assert len(part["train_labelled"]) + len(part["train_unlabelled"]) == sizes[0]
            groups = [set(part[k]) for k in ("train_labelled", "train_unlabelled", "val", "test")]
            assert sum(map(len, groups)) == n and set().union(*groups) == set(_ids(n))
        small, large = (fold_split(splits, f, s)["train_labelled"] for s in labels)
        assert set(small) < set(large)  # nested labelled subsets
        tested.update(fold_split(splits, f, labels[0])["test"])
    assert set(tested) == set(_ids(n))  # every case tested at least once
    # 5 test blocks of n_test cover n cases: CT20 and "other" exactly once, CT34 one case twice
    assert max(tested.values()) <= 2
    assert sum(1 for k in tested.values() if k == 2) == {20: 0, 34: 1, 30: 0}[n]


def test_splits_are_deterministic_and_order_independent() -> None:
    a = make_splits(_ids(20), "CT20", seed=3)
    b = make_splits(list(reversed(_ids(20))), "CT20", seed=3)
    assert json.dumps(a) == json.dumps(b)
    assert make_splits(_ids(20), "CT20", seed=4)["folds"] != a["folds"]


def test_unlabelled_cases_only_join_the_unlabelled_pool() -> None:
    ids = _ids(23)
    splits = make_splits(ids, "CT20", labelled=ids[:20])
    assert splits["extra_unlabelled"] == ids[20:]
    part = fold_split(splits, 2, 4)
    assert set(ids[20:]) <= set(part["train_unlabelled"])
    assert not set(ids[20:]) & set(part["test"] + part["val"] + part["train_labelled"])
    with pytest.raises(ValueError, match="label_size"):
        fold_split(splits, 0, 13)
    with pytest.raises(ValueError, match="fold"):
        fold_split(splits, 5, 4)


def test_split_file_created_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "splits" / "CT20.json"
    first = load_or_create_splits(path, _ids(20), "CT20", seed=0)
    text = path.read_text()
    assert json.loads(text) == first and [p.name for p in path.parent.iterdir()] == ["CT20.json"]
    # a hand-edited (valid) file is honoured, whatever seed is asked for now
    edited = json.loads(text)
    edited["folds"][0]["train"].reverse()
    path.write_text(json.dumps(edited))
    assert load_or_create_splits(path, _ids(20), "CT20", seed=7) == edited


@pytest.mark.parametrize("corruption, fragment", [
    ("not json", "unreadable split file"),
    ("overlap", "overlap"),
    ("cases", "cases differ"),
    ("format", "not a fedsim-splits-v1"),
    ("missing_key", "malformed"),
])
def test_invalid_split_file_is_reported(tmp_path: Path, corruption: str, fragment: str) -> None:
    path = tmp_path / "s.json"
    splits = make_splits(_ids(20), "CT20")
    if corruption == "overlap":
        splits["folds"][1]["val"][0] = splits["folds"][1]["test"][0]
    elif corruption == "format":
        splits["format"] = "v0"
    elif corruption == "missing_key":
        del splits["folds"][0]["val"]
    ids = _ids(21) if corruption == "cases" else _ids(20)
    path.write_text("{oops" if corruption == "not json" else json.dumps(splits))
    with pytest.raises(DataError, match=fragment) as info:
        load_or_create_splits(path, ids, "CT20")
    assert all(p.startswith(str(path)) for p in info.value.problems)


def test_too_few_cases() -> None:
    with pytest.raises(ValueError, match="too few"):
        make_splits(_ids(2), "tiny")
    assert label_sizes("tiny", 1) == (1,)
