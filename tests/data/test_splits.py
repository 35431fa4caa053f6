"""Splits: Table 1 sizes, disjointness, fold rotation, determinism; per-site label sizes (--label_sizes)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from fedsim_tf.data.splits import (SiteLabelSizes, fold_split, label_sizes, make_splits, parse_label_sizes,
                                   split_sizes)


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


@pytest.mark.parametrize("spec, expected", [
    ("", SiteLabelSizes()),
    ("low", SiteLabelSizes(level="low")),
    (" high ", SiteLabelSizes(level="high")),
    ("CT20:4,CT34LC:6,CT34MC:6", SiteLabelSizes(per_site=(("CT20", 4), ("CT34LC", 6), ("CT34MC", 6)))),
    ("my site : 12", SiteLabelSizes(per_site=(("my site", 12),))),
])
def test_label_sizes_specs_parse(spec: str, expected: SiteLabelSizes) -> None:
    assert parse_label_sizes(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("medium", r"^'medium' is not SITE:L; expected low, high or SITE:L,SITE:L,\.\.\. with L a positive integer"),
    ("CT20", r"^'CT20' is not SITE:L"),
    ("CT20:0", r"^'CT20:0' is not SITE:L"),
    ("CT20:-4", r"^'CT20:-4' is not SITE:L"),
    ("CT20:4.5", r"^'CT20:4.5' is not SITE:L"),
    (":4", r"^':4' is not SITE:L"),
    ("CT20:4,", r"^'' is not SITE:L"),
    ("low,CT20:4", r"^'low' is not SITE:L"),
    ("CT20:4,CT34LC:6,CT20:8", r"^site CT20 is named twice$"),
])
def test_malformed_label_sizes_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_label_sizes(spec)


def test_a_label_size_choice_is_a_known_level_or_per_site_sizes() -> None:
    with pytest.raises(ValueError, match="give either a level or per-site sizes, not both"):
        SiteLabelSizes(level="low", per_site=(("CT20", 4),))
    with pytest.raises(ValueError, match="unknown level 'mid'"):
        SiteLabelSizes(level="mid")


@pytest.mark.parametrize("site, n_train, low, high", [
    ("CT20", 12, 4, 8),  # Table 1
    ("CT34LC", 20, 6, 12),
    ("CT34MC", 20, 6, 12),
    ("CT34MC", 10, 3, 6),  # fewer training cases than Table 1's 12: round(0.3 * 10), round(0.6 * 10)
    ("other", 18, 5, 11),  # round(5.4), round(10.8)
    ("tiny", 1, 1, 1),  # both rules give 1
])
def test_low_and_high_pick_the_smaller_and_larger_label_size(site: str, n_train: int, low: int, high: int) -> None:
    assert SiteLabelSizes(level="low").size(site, n_train) == low
    assert SiteLabelSizes(level="high").size(site, n_train) == high
    listed = parse_label_sizes("CT20:7,other:2")
    assert (listed.size("CT20", 12), listed.size("other", 18), listed.size("CT34LC", 20)) == (7, 2, None)
    assert SiteLabelSizes().size(site, n_train) is None  # no --label_sizes: --label_size decides
