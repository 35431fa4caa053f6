"""The Table 3 cell planner (which cells, in which order), the ledger-driven runner (finished cells
skipped, a broken protocol resumed at the broken cell, changed settings rerun) and the ETA."""

from __future__ import annotations

import pytest

from fedsim_tf.experiments.cells import Cell, pending, plan_table3
from fedsim_tf.experiments.ledger import Ledger
from fedsim_tf.experiments.progress import eta_seconds, progress_line
from fedsim_tf.experiments.runner import run_cells


def _index(cells: list[Cell], **fields: object) -> int:
    matches = [i for i, c in enumerate(cells) if all(getattr(c, k) == v for k, v in fields.items())]
    assert len(matches) == 1, (fields, matches)
    return matches[0]


def test_single_site_plan_has_every_cell_once_in_dependency_order() -> None:
    cells = plan_table3(["A", "B"], ["low", "high"], [0, 1], single_site=True)
    # per site chain 1 pretrain + 2 GANs + 1 semi + 3 sets + 1 novelty = 8; per site rows 4 (+1 Upper Bound in
    # the first setting); federated 1 + 2 sets + Sim-FL + Direct-FL = 5; 1 out-of-distribution cell per site
    assert len(cells) == 2 * (2 * 8 + 2 * 5 + 5 + 2) + 2 * (2 * 8 + 2 * 4 + 5 + 2) == 128
    assert len({c.key for c in cells}) == len(cells)
    assert sum(c.method == "Upper Bound" for c in cells) == 4  # per fold and site, whatever the setting
    for setting in ("low", "high"):
        for fold in (0, 1):
            for site in ("A", "B"):
                pre = _index(cells, stage="pretrain", setting=setting, fold=fold, generator=site)
                gan = _index(cells, stage="pretrain_gan", setting=setting, fold=fold, site=site, material="learned")
                fix = _index(cells, stage="pretrain_gan", setting=setting, fold=fold, site=site, material="fixmat")
                semi = _index(cells, stage="semi", setting=setting, fold=fold, generator=site)
                full = _index(cells, stage="synthesize", setting=setting, fold=fold, site=site, source="semi")
                row = _index(cells, stage="segment", setting=setting, fold=fold, site=site, method="Ours-Full")
                fixrow = _index(cells, stage="segment", setting=setting, fold=fold, site=site, method="Ours-Fix-Mat")
                fixset = _index(cells, stage="synthesize", setting=setting, fold=fold, site=site, material="fixmat")
                novelty = _index(cells, stage="novelty", setting=setting, fold=fold, site=site)
                assert pre < gan < semi < full < row and fix < fixset < fixrow and full < novelty
                assert cells[novelty].source == "semi" and cells[novelty].material == "learned"
                ood = _index(cells, stage="ood", setting=setting, fold=fold, site=site)
                upper = _index(cells, stage="segment", fold=fold, site=site, method="Upper Bound")
                assert ood > max(upper, gan, _index(cells, stage="pretrain_gan", setting=setting, fold=fold,
                                                    site="B" if site == "A" else "A", material="learned"))
            fed = _index(cells, stage="federated", setting=setting, fold=fold)
            sets = [_index(cells, stage="synthesize", setting=setting, fold=fold, site=s, source="federated")
                    for s in ("A", "B")]
            sim = _index(cells, stage="segment", setting=setting, fold=fold, method="Ours-Sim-FL")
            assert fed < min(sets) and max(sets) < sim
    assert cells[0] == Cell("pretrain", 0, "low", "A")
    assert cells[-1] == Cell("ood", 1, "high", site="B")


def test_pooled_plan_has_one_generator_per_fold_and_setting() -> None:
    cells = plan_table3(["A", "B", "C"], [""], [3], single_site=False)
    assert [c.generator for c in cells if c.stage in ("pretrain", "semi")] == ["pooled", "pooled"]
    assert sum(c.stage == "pretrain_gan" for c in cells) == 6
    assert {c.fold for c in cells} == {3}
    assert Cell("segment", 3, "", "pooled", "B", "Ours-Pre", "learned", "pretrain") in cells
    assert [c for c in cells if c.stage == "novelty"] == [Cell("novelty", 3, "", "pooled", s, material="learned",
                                                               source="semi") for s in ("A", "B", "C")]


def test_pending_skips_finished_cells_in_order() -> None:
    cells = plan_table3(["A"], ["low"], [0], single_site=True)
    finished = [cells[0].key, cells[2].key]
    assert pending(cells, finished) == [cells[1], *cells[3:]]


class Broken(Exception):
    pass


def test_runner_skips_finished_cells_resumes_a_broken_one_and_reruns_changed_settings(tmp_path) -> None:
    cells = [Cell("pretrain", 0, "low", "A"), Cell("semi", 0, "low", "A"), Cell("segment", 0, "low", site="A",
                                                                              method="Lower Bound")]
    ledger = Ledger(tmp_path / "cells")
    calls: list[str] = []
    settings = {cell: {"steps": 2} for cell in cells}

    def execute(cell: Cell, fail_at: str = "") -> dict:
        calls.append(cell.key)
        if cell.key == fail_at:
            raise Broken(cell.key)
        return {"rows": [cell.key]}

    with pytest.raises(Broken, match="semi"):
        run_cells(cells, ledger, settings.__getitem__, lambda c: execute(c, cells[1].key))
    assert calls == [c.key for c in cells[:2]]
    assert ledger.read(cells[1].key) is None and ledger.read(cells[0].key)["output"] == {"rows": [cells[0].key]}
    calls.clear()
    records = run_cells(cells, ledger, settings.__getitem__, execute)
    assert calls == [c.key for c in cells[1:]]  # the broken cell and the rest, not the finished one
    assert list(records) == [c.key for c in cells] and all(r["wall_s"] >= 0 for r in records.values())
    calls.clear()
    run_cells(cells, ledger, settings.__getitem__, execute)
    assert calls == []
    settings[cells[2]] = {"steps": 3}
    run_cells(cells, ledger, settings.__getitem__, execute)
    assert calls == [cells[2].key]


def test_eta_uses_the_mean_wall_time_of_finished_cells_of_the_same_kind() -> None:
    cells = [Cell("pretrain", 0, "low", "A"), Cell("pretrain", 0, "low", "B"), Cell("pretrain", 0, "low", "C"),
             Cell("semi", 0, "low", "A"), Cell("semi", 0, "low", "B"), Cell("federated", 0, "low", "federated")]
    walls = {cells[0].key: 10.0, cells[1].key: 20.0, cells[3].key: 60.0}
    # remaining: one pretrain (mean 15), one semi (60), federated (no kind finished: mean of all, 30)
    assert eta_seconds(cells[2:3] + cells[4:], walls, cells) == pytest.approx(15 + 60 + 30)
    assert eta_seconds(cells, {}, cells) is None
    line = progress_line(cells, walls, cells[2])
    assert line == f"experiment cells 3/6 | finished cells 01:30 | ETA 01:45 | next {cells[2].key}"
