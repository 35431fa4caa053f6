"""Per-site train/val/test splits, five rotating folds and labelled subsets, stored as JSON.

**Sizes.** Over the site's ``n`` *labelled* cases: ``n_test = n_val = max(1, round(n / n_folds))``
and ``n_train = n - n_test - n_val``. With five folds this reproduces Table 1 of the paper
exactly (CT20: 12/4/4, CT34LC and CT34MC: 20/7/7) and is the proportional rule for any other
site. Cases without a label file cannot be validated or tested on: they are added to every
fold's unlabelled training pool (``extra_unlabelled``).

**Folds.** The labelled ids (sorted naturally) are shuffled once with ``seed`` and the site name.
Fold ``f``'s test block starts at position ``round(f * n / n_folds)`` of that permutation and takes
the next ``n_test`` cases; its validation block is the ``n_val`` cases after that (cyclically); the
rest is training. So the test blocks rotate through the permutation and every case is tested at
least once; when ``n`` is not a multiple of ``n_folds`` a few cases are tested twice (CT34: 34
cases, 5 x 7 test slots, one case twice).

**Labelled subsets.** Each fold's ``train`` list is stored in a seeded random order; the labelled
subset of size ``L`` is its first ``L`` ids (so subsets are nested: the 4 of CT20 are among its 8).
Table 1 label sizes: CT20 (4, 8), CT34LC/CT34MC (6, 12); other sites (and Table 1 sites with fewer training
cases than the larger size): ``round(0.3 * n_train)`` and ``round(0.6 * n_train)`` (at least 1).

**Per-site label sizes** (``--label_sizes``, :func:`parse_label_sizes`): ``low`` / ``high`` give every site
the smaller / larger of its two sizes -- the paper's combinations (4, 6, 6) and (8, 12, 12) for (CT20,
CT34LC, CT34MC) --, and ``SITE:L,SITE:L,...`` names ``L`` site by site.

**One split per site.** The record is a pure function of the site's name and its case list (the
stages call :func:`make_splits` with a fixed seed), so every stage and every run -- whatever its
``--seed`` or ``--work_dir`` -- splits a site the same way.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsim_tf.data.layouts import natural_key

SPLIT_FORMAT = "fedsim-splits-v1"
TABLE1_LABEL_SIZES: dict[str, tuple[int, int]] = {"CT20": (4, 8), "CT34LC": (6, 12), "CT34MC": (6, 12)}
OTHER_LABEL_FRACTIONS: tuple[float, float] = (0.3, 0.6)
LABEL_SIZE_LEVELS: tuple[str, ...] = ("low", "high")  # the smaller / larger entry of label_sizes()
LABEL_SIZES_FORMS = "low, high or SITE:L,SITE:L,... with L a positive integer (e.g. CT20:4,CT34LC:6,CT34MC:6)"


def split_sizes(n_labelled: int, n_folds: int = 5) -> dict[str, int]:
    """``{"train", "val", "test"}`` sizes for ``n_labelled`` cases (rule in the module docstring)."""
    n_eval = max(1, round(n_labelled / n_folds))
    if n_labelled - 2 * n_eval < 1:
        raise ValueError(f"{n_labelled} labelled cases are too few for train/val/test splits (need >= 3)")
    return {"train": n_labelled - 2 * n_eval, "val": n_eval, "test": n_eval}


def label_sizes(site: str, n_train: int) -> tuple[int, ...]:
    """The labelled-subset sizes ``L`` of a site (Table 1 or the proportional rule)."""
    if site in TABLE1_LABEL_SIZES and max(TABLE1_LABEL_SIZES[site]) <= n_train:
        return TABLE1_LABEL_SIZES[site]
    return tuple(sorted({max(1, round(f * n_train)) for f in OTHER_LABEL_FRACTIONS}))


@dataclass(frozen=True)
class SiteLabelSizes:
    """A per-site choice of ``L`` (``--label_sizes``): a level for every site, or sizes by site name.

    Attributes:
        level: ``""`` (none), ``"low"`` or ``"high"``: every site's smaller / larger :func:`label_sizes`.
        per_site: ``(site name, L)`` pairs, for the sites they name (set only when ``level`` is empty).
    """

    level: str = ""
    per_site: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if self.level not in ("", *LABEL_SIZE_LEVELS):
            raise ValueError(f"unknown level {self.level!r}; expected {' or '.join(LABEL_SIZE_LEVELS)}")
        if self.level and self.per_site:
            raise ValueError("give either a level or per-site sizes, not both")

    @property
    def sites(self) -> tuple[str, ...]:
        """The site names that ``per_site`` lists, in its order."""
        return tuple(site for site, _ in self.per_site)

    def size(self, site: str, n_train: int) -> int | None:
        """``L`` of ``site`` (``n_train`` training cases per fold), or None when this choice does not cover it."""
        if self.level:
            sizes = label_sizes(site, n_train)  # ascending; one entry when both rules round alike
            return sizes[0] if self.level == "low" else sizes[-1]
        return dict(self.per_site).get(site)


def parse_label_sizes(spec: str) -> SiteLabelSizes:
    """Read a ``--label_sizes`` value: ``""``, ``low``, ``high`` or ``SITE:L,SITE:L,...``.

    Raises:
        ValueError: a one-line description of what is malformed (an item that is not ``SITE:L``, an ``L``
            that is not a positive integer, a site named twice).
    """
    spec = spec.strip()
    if spec in ("", *LABEL_SIZE_LEVELS):
        return SiteLabelSizes(level=spec)
    pairs: list[tuple[str, int]] = []
    for item in spec.split(","):
        site, sep, size = (part.strip() for part in item.partition(":"))
        if not (sep and site and size.isdecimal() and int(size) >= 1):
            raise ValueError(f"{item.strip()!r} is not SITE:L; expected {LABEL_SIZES_FORMS}")
        if site in dict(pairs):
            raise ValueError(f"site {site} is named twice")
        pairs.append((site, int(size)))
    return SiteLabelSizes(per_site=tuple(pairs))


def _rng(seed: int, site: str, salt: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(site.encode()), salt])


def make_splits(
    case_ids: Sequence[str],
    site: str,
    labelled: Collection[str] | None = None,
    n_folds: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Build the split record of a site (JSON-ready; format in the module docstring).

    Args:
        case_ids: every case id of the site.
        site: site name (``CT20``, ``CT34LC``, ``CT34MC`` or any other).
        labelled: ids that have a label file; default all.
        n_folds: number of folds.
        seed: shuffling seed; the same inputs always give the same record.

    Returns:
        ``{"format", "site", "seed", "n_folds", "cases", "labelled", "extra_unlabelled",
        "sizes", "label_sizes", "folds": [{"test", "val", "train"}, ...]}``.
    """
    if len(set(case_ids)) != len(case_ids):
        raise ValueError(f"site {site}: duplicate case ids")
    cases = sorted(case_ids, key=natural_key)
    labelled_set = set(cases if labelled is None else labelled)
    if not labelled_set <= set(cases):
        raise ValueError(f"site {site}: labelled ids not among the cases: {sorted(labelled_set - set(cases))}")
    ids = [c for c in cases if c in labelled_set]
    sizes = split_sizes(len(ids), n_folds)
    order = [ids[i] for i in _rng(seed, site, 0).permutation(len(ids))]
    n = len(ids)
    folds = []
    for fold in range(n_folds):
        start = round(fold * n / n_folds)
        picks = [order[(start + k) % n] for k in range(sizes["test"] + sizes["val"])]
        test, val = picks[: sizes["test"]], picks[sizes["test"]:]
        rest = [c for c in ids if c not in set(picks)]
        train = [rest[i] for i in _rng(seed, site, fold + 1).permutation(len(rest))]
        folds.append({"test": test, "val": val, "train": train})
    return {
        "format": SPLIT_FORMAT,
        "site": site,
        "seed": int(seed),
        "n_folds": int(n_folds),
        "cases": cases,
        "labelled": ids,
        "extra_unlabelled": [c for c in cases if c not in labelled_set],
        "sizes": sizes,
        "label_sizes": list(label_sizes(site, sizes["train"])),
        "folds": folds,
    }


def fold_split(splits: dict[str, Any], fold: int, label_size: int) -> dict[str, list[str]]:
    """The case ids of one fold.

    Args:
        splits: a split record.
        fold: fold index ``0 .. n_folds - 1``.
        label_size: ``L``, how many training cases keep their labels.

    Returns:
        ``{"train_labelled": first L of the fold's train order, "train_unlabelled": the other
        training cases + ``extra_unlabelled``, "val": [...], "test": [...]}``.
    """
    if not 0 <= fold < len(splits["folds"]):
        raise ValueError(f"fold must be in 0..{len(splits['folds']) - 1}, got {fold}")
    entry = splits["folds"][fold]
    if not 1 <= label_size <= len(entry["train"]):
        raise ValueError(f"label_size must be in 1..{len(entry['train'])}, got {label_size}")
    return {
        "train_labelled": list(entry["train"][:label_size]),
        "train_unlabelled": list(entry["train"][label_size:]) + list(splits["extra_unlabelled"]),
        "val": list(entry["val"]),
        "test": list(entry["test"]),
    }
