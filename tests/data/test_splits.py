"""Splits: Table 1 sizes, disjointness, fold rotation, determinism."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from fedsim_tf.data.splits import fold_split, label_sizes, make_splits, split_sizes


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


def test_too_few_cases() -> None:
    with pytest.raises(ValueError, match="too few"):
        make_splits(_ids(2), "tiny")
    assert label_sizes("tiny", 1) == (1,)
