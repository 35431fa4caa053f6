"""Protocol integrity, planned without training: no validation/test case of a fold reaches any training input
of that fold (the generators' labelled set, the unlabelled set of semi/federated, the segmentation network's
training volumes), test blocks rotate without repeats, one split per site whatever --seed or --work_dir, and
per-site label sizes (--label_sizes) reach every site's plan and the generator runs' names."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from fedsim_tf.data.splits import SiteLabelSizes, parse_label_sizes
from fedsim_tf.errors import UserInputError
from fedsim_tf.options import CommonConfig
from fedsim_tf.stages import inputs
from tests.stages.sites import write_site
from tests.test_cli import ROOT

# Site A: 5 labelled cases -> 3 train / 1 val / 1 test per fold. Site B: 6 labelled cases -> 4 / 1 / 1,
# plus one image-only case (its label file removed) that may only ever be an unlabelled training volume.
LABELLED = {"A": [f"ct_train_{1001 + i}" for i in range(5)], "B": [f"ct_train_{1001 + i}" for i in range(6)]}
IMAGE_ONLY = {"A": [], "B": ["ct_train_1007"]}
N_TRAIN = {"A": 3, "B": 4}
FOLDS = 5


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("protocol")
    write_site(folder / "A", 5, seed=1)
    write_site(folder / "B", 7, seed=2)
    (folder / "B" / "ct_train_1007_label.nii.gz").unlink()
    return folder


def _common(root: Path, **changes: object) -> CommonConfig:
    base = CommonConfig(data_dirs=(str(root / "A"), str(root / "B")), layout="mmwhs", work_dir=str(root / "work"),
                        seed=1, fold=0, label_size=2, volume_size=16, fov_mm=120.0, coarse_size=8, phantom_dir="",
                        phantom_small=True)
    return replace(base, **changes)


def _training_inputs(plans: list[inputs.SitePlan], common: CommonConfig, fold: int) -> dict[str, dict[str, set[str]]]:
    """Per site, every set of case ids that a training stage of ``fold`` reads, as the stages select them."""
    fold_common = replace(common, fold=fold)
    generator = inputs.training_set(plans, fold_common).labelled  # pretrain, pretrain_gan, semi, federated
    single = {p.name: inputs.training_set(plans, replace(fold_common, single_site=True, site=p.name)).labelled[p.name]
              for p in plans}  # the single-site simulation's generator
    return {plan.name: {
        "generator labelled": set(generator[plan.name]),
        "single-site generator labelled": set(single[plan.name]),
        "semi/federated unlabelled": set(plan.fold_ids(fold)["train_unlabelled"]),
        "segment L": set(plan.fold_ids(fold, plan.label_size)["train_labelled"]),  # lower, finetune, FL fine-tuning
        "segment upper": set(plan.fold_ids(fold, plan.n_train)["train_labelled"]),
    } for plan in plans}


@pytest.mark.parametrize("label_size, label_sizes, expected", [
    (2, "", {"A": 2, "B": 2}),
    (0, "low", {"A": 1, "B": 1}),  # round(0.3 * 3) = 1, round(0.3 * 4) = 1
    (0, "high", {"A": 2, "B": 2}),  # round(0.6 * 3) = 2, round(0.6 * 4) = 2
    (2, "A:1,B:4", {"A": 1, "B": 4}),
    (2, "B:1", {"A": 2, "B": 1}),  # --label_size for the sites --label_sizes leaves out
])
def test_no_held_out_case_of_a_fold_reaches_any_training_input_of_that_fold(
    root: Path, label_size: int, label_sizes: str, expected: dict[str, int]
) -> None:
    common = _common(root, label_size=label_size, label_sizes=parse_label_sizes(label_sizes))
    plans = inputs.plan_sites(common)
    assert {p.name: p.label_size for p in plans} == expected
    assert [p.n_folds for p in plans] == [FOLDS, FOLDS] and {p.name: p.n_train for p in plans} == N_TRAIN
    tested: dict[str, Counter[str]] = {name: Counter() for name in LABELLED}
    for fold in range(FOLDS):
        used = _training_inputs(plans, common, fold)
        for plan in plans:
            ids = plan.fold_ids(fold)
            held_out = set(ids["val"]) | set(ids["test"])
            assert len(ids["val"]) == len(ids["test"]) == 1 and set(ids["val"]).isdisjoint(ids["test"])
            assert held_out <= set(LABELLED[plan.name])  # only labelled cases are evaluated on
            for what, cases in used[plan.name].items():
                assert cases and not cases & held_out, (plan.name, fold, what, sorted(cases & held_out))
            training = used[plan.name]
            assert len(training["generator labelled"]) == expected[plan.name]
            assert training["single-site generator labelled"] == training["generator labelled"] == training["segment L"]
            assert training["segment upper"] == training["segment L"] | (training["semi/federated unlabelled"] -
                                                                          set(IMAGE_ONLY[plan.name]))
            # labelled + unlabelled + val + test = every case of the site, once
            parts = [training["segment L"], training["semi/federated unlabelled"], set(ids["val"]), set(ids["test"])]
            assert sum(map(len, parts)) == len(LABELLED[plan.name]) + len(IMAGE_ONLY[plan.name])
            assert set().union(*parts) == set(LABELLED[plan.name] + IMAGE_ONLY[plan.name])
            tested[plan.name].update(ids["test"])
    # One test volume per fold, 5 folds: A's 5 cases are each tested exactly once; B's 6 labelled cases fill the
    # 5 test slots without a repeat, so one of B's cases is never tested (the Table 1 rule's 1 test volume per
    # fold for 6 cases); the image-only case never is.
    assert sorted(tested["A"]) == LABELLED["A"] and set(tested["A"].values()) == {1}
    assert len(tested["B"]) == 5 and set(tested["B"].values()) == {1} and set(tested["B"]) < set(LABELLED["B"])


def test_the_splits_are_the_same_for_another_work_dir_and_seed(root: Path) -> None:
    first = _common(root, work_dir=str(root / "one"), seed=0)
    second = _common(root, work_dir=str(root / "two"), seed=7)
    plans_1, plans_2 = inputs.plan_sites(first), inputs.plan_sites(second)
    for plan_1, plan_2 in zip(plans_1, plans_2):
        assert plan_1.splits == plan_2.splits
        assert [plan_1.fold_ids(f) for f in range(FOLDS)] == [plan_2.fold_ids(f) for f in range(FOLDS)]
    for fold in range(FOLDS):
        assert (inputs.training_set(plans_1, replace(first, fold=fold)).labelled ==
                inputs.training_set(plans_2, replace(second, fold=fold)).labelled)


def test_per_site_label_sizes_name_the_generator_runs(root: Path) -> None:
    common = _common(root, label_sizes=parse_label_sizes("B:3,A:1"), fold=2)
    plans = inputs.plan_sites(common)
    assert inputs.training_set(plans, common).name == "fold2_seed1_A-L1_B-L3"
    assert [len(plans[1].fold_ids(f)["train_labelled"]) for f in range(FOLDS)] == [3] * FOLDS


def test_per_site_label_sizes_that_do_not_fit_are_one_line_errors(root: Path) -> None:
    with pytest.raises(UserInputError, match=r"^--label_sizes: C not among the sites \(A, B\)$"):
        inputs.plan_sites(_common(root, label_sizes=parse_label_sizes("A:1,C:2")))
    with pytest.raises(UserInputError, match=r"^--label_sizes: B:5: site B \(.*B\) has 6 labelled volumes, 4 of them "
                                             r"for training per fold; the largest valid L of B is 4$"):
        inputs.plan_sites(_common(root, label_sizes=parse_label_sizes("B:5")))
    with pytest.raises(UserInputError, match=r"^--label_size=4: site A \(.*A\) has 5 labelled volumes, 3 of them for "
                                             r"training per fold; the largest valid --label_size is 3$"):
        inputs.plan_sites(_common(root, label_size=4, label_sizes=parse_label_sizes("B:4")))


def test_low_and_high_are_the_papers_combinations_on_the_table1_sites(tmp_path: Path) -> None:
    # Table 1: CT20 has 20 labelled cases (12 training per fold), CT34LC and CT34MC 34 (20 training per fold).
    counts = {"CT20": 20, "CT34LC": 34, "CT34MC": 34}
    for name, count in counts.items():
        write_site(tmp_path / name, count, prefix="ct_")
    common = CommonConfig(data_dirs=tuple(str(tmp_path / name) for name in counts), layout="mmwhs",
                          work_dir="unused", seed=0, fold=0, label_size=0, volume_size=16, fov_mm=120.0,
                          coarse_size=8, phantom_dir="", phantom_small=True)
    for spec, sizes in (("low", (4, 6, 6)), ("high", (8, 12, 12)), ("", (4, 6, 6)),
                        ("CT34MC:9", (4, 6, 9)), ("CT20:8,CT34LC:12,CT34MC:12", (8, 12, 12))):
        plans = inputs.plan_sites(replace(common, label_sizes=parse_label_sizes(spec)))
        assert tuple(p.label_size for p in plans) == sizes, spec
        assert inputs.training_set(plans, common).name == "fold0_seed0_" + "_".join(
            f"{name}-L{size}" for name, size in zip(counts, sizes))
    # --label_size covers the sites a SITE:L list leaves out; a level covers every site.
    mixed = replace(common, label_size=3, label_sizes=parse_label_sizes("CT20:8"))
    assert [p.label_size for p in inputs.plan_sites(mixed)] == [8, 3, 3]
    assert [p.label_size for p in inputs.plan_sites(replace(mixed, label_sizes=SiteLabelSizes("high")))] == [8, 12, 12]


def test_label_sizes_reach_the_plan_from_the_command_line_before_tensorflow(root: Path, no_tensorflow: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, (no_tensorflow, ROOT)))}
    result = subprocess.run([sys.executable, "-m", "fedsim_tf.main", "--stage=segment", f"--data_dir={root / 'A'}",
                             f"--data_dir={root / 'B'}", f"--work_dir={root / 'cli'}", "--label_sizes=A:2,B:5"],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: --label_sizes: B:5: site B ({root / 'B'}) has 6 labelled volumes, 4 of them for training per fold; "
        "the largest valid L of B is 4"]
    assert not (root / "cli").exists()
