"""Table 2 (the ablation, trained only on synthetic data): the planner (cells, order, dependencies, counted
by hand), each cell's stage settings (shape, blend, Fix-Mat, ``segment --mode=synthetic_only`` on the
matching synthetic set), the report against hand-made rows, and the whole protocol on two tiny sites in
this process (Table 2 has no federated cell, so no device set-up; about 25 s on 2 cores)."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from fedsim_tf.experiments import paper_numbers, table2_report, table3_cells
from fedsim_tf.experiments.cells import Cell, plan_table2
from tests.experiments import table3_harness
from tests.stages.sites import write_site

ROWS = ("Rand Shape + GAN", "+ Alpha blend", "+ Poisson blend", "Ours Fix-Mat")


def test_plan_has_every_cell_once_on_ct20_in_dependency_order() -> None:
    cells = plan_table2(["CT34LC", "CT20", "CT34MC"], ["low", "high"], [0, 1])
    # per setting and fold: 1 pretrain + 1 Fix-Mat GAN + 4 synthetic sets + 4 segment rows = 10
    assert len(cells) == 2 * 2 * 10 == 40 and len({c.key for c in cells}) == 40
    assert {c.site for c in cells} == {"", "CT20"} and {c.generator for c in cells} == {"CT20"}
    assert cells[:10] == [
        Cell("pretrain", 0, "low", "CT20"),
        Cell("pretrain_gan", 0, "low", "CT20", "CT20", material="fixmat"),
        *(Cell("synthesize", 0, "low", "CT20", "CT20", row, "fixmat", "pretrain") for row in ROWS),
        *(Cell("segment", 0, "low", "CT20", "CT20", row, "fixmat", "pretrain") for row in ROWS)]
    assert [(c.setting, c.fold) for c in cells[::10]] == [("low", 0), ("low", 1), ("high", 0), ("high", 1)]
    assert cells[-1] == Cell("segment", 1, "high", "CT20", "CT20", "Ours Fix-Mat", "fixmat", "pretrain")


def test_plan_falls_back_to_the_first_site_without_ct20() -> None:
    cells = plan_table2(["B", "A"], [""], [3])
    assert len(cells) == 10 and {c.generator for c in cells} == {"B"} and {c.fold for c in cells} == {3}


def test_cells_run_the_ablation_settings(tmp_path: Path) -> None:
    write_site(tmp_path / "A", 5, seed=1)
    write_site(tmp_path / "B", 5, seed=2)
    configs = replace(table3_harness.config(tmp_path).stages, seg_batch_size=2, seg_pretrain_steps=9)
    cells = plan_table2(["A", "B"], ["A:2,B:3"], [0])
    pretrain, gan = (table3_cells.stage_config(configs, cell) for cell in cells[:2])
    assert (pretrain.common.single_site, pretrain.common.site, pretrain.common.label_sizes.per_site) == (
        True, "A", (("A", 2), ("B", 3)))
    assert (gan.material, gan.common.single_site, gan.common.site) == ("fixmat", True, "A")
    expected = {"Rand Shape + GAN": "random-none", "+ Alpha blend": "random-alpha",
                "+ Poisson blend": "random-poisson", "Ours Fix-Mat": "learned-none"}
    for synth_cell, segment_cell in zip(cells[2:6], cells[6:10]):
        synth = table3_cells.stage_config(configs, synth_cell)
        assert (synth.generator, synth.material, f"{synth.shape}-{synth.blend}") == (
            "pretrain", "fixmat", expected[synth_cell.method])
        seg = table3_cells.stage_config(configs, segment_cell)
        assert (seg.mode, seg.folds, seg.training.batch_size, seg.training.pretrain_steps) == (
            "synthetic_only", 1, 2, 0)
        # the set of the same row: <work_dir>/synthesize/<run>/<site>-<generator>-<material>-<shape>-<blend>
        assert os.path.basename(seg.synthetic_dir) == f"A-pretrain-fixmat-{expected[segment_cell.method]}"
        assert seg.common.site == "A" and not seg.common.single_site


def _row(method: str, fold: int, dice: dict[str, float | None], setting: str = "low", size: int = 4) -> dict:
    return {"method": method, "setting": setting, "site": "CT20", "label_size": size, "fold": fold,
            "test_dice": dice}


REPORT_ROWS = [
    _row("Rand Shape + GAN", 0, {"a": 0.5, "b": 0.7}),    # fold means 0.6, 0.4: 0.5 ± 0.1
    _row("Rand Shape + GAN", 1, {"c": 0.4, "d": None}),   # null (empty ground truth) left out
    _row("+ Alpha blend", 0, {"a": 0.6, "b": 0.6}),       # 0.6 ± 0.0
    _row("Ours Fix-Mat", 0, {"a": 0.9, "b": 0.7}),        # 0.8, 0.6: 0.7 ± 0.1, the best
    _row("Ours Fix-Mat", 1, {"c": 0.6, "d": 0.6}),
]


def test_report_against_hand_computed_cells(tmp_path: Path) -> None:
    summary = table2_report.summarise(REPORT_ROWS, ["low"])
    assert summary["schema"] == table2_report.SCHEMA and summary["site"] == "CT20"
    assert summary["columns"] == [{"setting": "low", "label_size": 4}]
    assert [row["method"] for row in summary["rows"]] == list(ROWS)
    assert [row["paper"] for row in summary["rows"]] == [67.07, 68.80, 76.44, 78.92]
    rand, alpha, poisson, ours = (row["cells"][0] for row in summary["rows"])
    assert rand["fold_means"] == pytest.approx([0.6, 0.4]) and (rand["folds"], rand["volumes"]) == (2, 3)
    assert (rand["mean"], rand["std"]) == (pytest.approx(0.5), pytest.approx(0.1))
    assert (alpha["mean"], alpha["std"], alpha["folds"]) == (pytest.approx(0.6), pytest.approx(0.0), 1)
    assert poisson is None
    assert (ours["mean"], ours["std"]) == (pytest.approx(0.7), pytest.approx(0.1))
    assert [c is not None and c["bold"] for c in (rand, alpha, poisson, ours)] == [False, False, False, True]

    text = table2_report.markdown(summary, ["data: tiny"])
    assert "| Method | CT20 L=4 (low) | paper (CT20 L=4) |" in text and "- data: tiny" in text
    assert "| Rand Shape + GAN | 50.00 ± 10.00 | 67.07 |" in text
    assert "| + Poisson blend | n/a | 76.44 |" in text
    assert "| Ours Fix-Mat | **70.00 ± 10.00** | **78.92** |" in text

    manifest = {"format": "m", "cell_wall_s": {"x": 1.0}}
    paths = table2_report.write_table2(tmp_path, REPORT_ROWS, ["low"], ["data: tiny"], manifest)
    assert sorted(p.name for p in paths.values()) == ["table2.json", "table2_experiment.md", "table2_manifest.json",
                                                      "table2_volumes.csv"]
    data = json.loads((tmp_path / "table2.json").read_text())
    assert set(data) == {"schema", "site", "columns", "rows", "paper"} and data["rows"][0]["cells"][0]["mean"] == 0.5
    lines = list(csv.reader(io.StringIO((tmp_path / "table2_volumes.csv").read_text())))
    assert len(lines) == 1 + 5 * 2 and lines[4] == ["Rand Shape + GAN", "low", "CT20", "4", "1", "d", ""]
    assert json.loads((tmp_path / "table2_manifest.json").read_text()) == manifest
    assert paper_numbers.TABLE2["+ Poisson blend"] == 76.44


def test_tiny_table2_protocol_writes_every_row_and_reruns_nothing(tmp_path: Path) -> None:
    from fedsim_tf.stages import experiment

    write_site(tmp_path / "A", 5, seed=1)
    write_site(tmp_path / "B", 5, seed=2)
    config = replace(table3_harness.config(tmp_path), table=2)
    paths = experiment.run(config)
    ledger = tmp_path / "work" / "experiment" / "table2_cells"
    first = {p.name: p.read_text() for p in ledger.glob("*.json")}
    assert len(first) == 10  # 1 pretrain, 1 GAN, 4 sets, 4 rows on site A
    assert sorted(p.name for p in paths.values()) == ["table2.json", "table2_experiment.md", "table2_manifest.json",
                                                      "table2_volumes.csv"]
    data = json.loads(Path(paths["json"]).read_text())
    assert data["site"] == "A" and data["columns"] == [{"setting": "", "label_size": 2}]
    for row in data["rows"]:
        [cell] = row["cells"]
        assert cell["folds"] == 1 and cell["volumes"] == 1 and 0.0 <= cell["mean"] <= 1.0
    experiment.run(config)
    assert {p.name: p.read_text() for p in ledger.glob("*.json")} == first  # the rerun ran no cell
