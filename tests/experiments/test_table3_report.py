"""Table 3's report against hand-made rows: mean ± std over folds computed by hand, bold per column and
section, CSV lines, the JSON schema, the paper's numbers as typed, the box plot's quartiles."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from fedsim_tf.experiments import paper_numbers, table3_report
from fedsim_tf.experiments.boxplot import box_stats
from fedsim_tf.experiments.table3_outputs import write_table3


def _row(method: str, site: str, fold: int, dice: dict[str, float | None], setting: str = "low",
         size: int = 2) -> dict:
    return {"method": method, "setting": setting, "site": site, "label_size": size, "fold": fold, "test_dice": dice}


ROWS = [
    _row("Lower Bound", "A", 0, {"a": 0.8, "b": 0.9}),       # fold means 0.85, 0.70
    _row("Lower Bound", "A", 1, {"c": 0.7, "d": None}),      # null (empty ground truth) left out
    _row("Ours-Pre", "A", 0, {"a": 0.9, "b": 0.9}),          # 0.90, 0.80
    _row("Ours-Pre", "A", 1, {"c": 0.8, "d": 0.8}),
    _row("Upper Bound", "A", 0, {"a": 0.95, "b": 0.95}, setting="", size=3),  # highest, but not ranked
    _row("Upper Bound", "A", 1, {"c": 0.95, "d": 0.95}, setting="", size=3),
    _row("Direct-FL", "A", 0, {"a": 0.6, "b": 0.6}),
    _row("Ours-Sim-FL", "A", 0, {"a": 0.7, "b": 0.7}),
    _row("Lower Bound", "B", 0, {"e": 0.4, "f": 0.6}, size=1),  # a tie at 0.5: both bold
    _row("Ours-Pre", "B", 0, {"e": 0.5, "f": 0.5}, size=1),
]


def _cell(summary: dict, method: str, column: int) -> dict:
    return next(row for row in summary["rows"] if row["method"] == method)["cells"][column]


def test_cells_are_mean_and_population_std_of_the_fold_means() -> None:
    summary = table3_report.summarise(ROWS, ["low"])
    assert summary["columns"] == [{"site": "A", "setting": "low", "label_size": 2},
                                  {"site": "B", "setting": "low", "label_size": 1}]
    lower = _cell(summary, "Lower Bound", 0)
    assert lower["fold_means"] == pytest.approx([0.85, 0.70])
    assert (lower["mean"], lower["std"]) == (pytest.approx(0.775), pytest.approx(0.075))
    assert (lower["folds"], lower["volumes"]) == (2, 3)
    pre = _cell(summary, "Ours-Pre", 0)
    assert (pre["mean"], pre["std"]) == (pytest.approx(0.85), pytest.approx(0.05))
    upper_b = _cell(summary, "Upper Bound", 1)
    assert upper_b is None  # no Upper Bound row for site B
    assert _cell(summary, "Upper Bound", 0)["mean"] == pytest.approx(0.95)
    assert [row["method"] for row in summary["rows"]] == ["Lower Bound", "Ours-Pre", "Upper Bound", "Direct-FL",
                                                         "Ours-Sim-FL"]


def test_bold_is_the_best_mean_of_a_column_within_its_section_upper_bound_unranked() -> None:
    summary = table3_report.summarise(ROWS, ["low"])
    bold = {(row["method"], i) for row in summary["rows"] for i, c in enumerate(row["cells"]) if c and c["bold"]}
    assert bold == {("Ours-Pre", 0), ("Ours-Sim-FL", 0), ("Lower Bound", 1), ("Ours-Pre", 1)}


def test_markdown_shows_percent_bold_and_the_papers_table() -> None:
    summary = table3_report.summarise(ROWS, ["low"])
    text = table3_report.markdown(summary, ["command: `x`", "data: tiny"])
    assert "| single site | Lower Bound | 77.50 ± 7.50 | **50.00 ± 0.00** |" in text
    assert "| single site | Ours-Pre | **85.00 ± 5.00** | **50.00 ± 0.00** |" in text
    assert "| single site | Upper Bound | 95.00 ± 0.00 | n/a |" in text
    assert "| federated | Direct-FL | 60.00 ± 0.00 | n/a |" in text
    assert "- data: tiny" in text
    assert "| single site | Ours-Full | **88.95 ± 2.97** | **91.39 ± 1.27** | 85.91 ± 3.61 |" in text
    assert "| single site | Upper Bound | 89.81 ± 2.50 | 89.81 ± 2.50 | 88.76 ± 1.82 |" in text


def test_papers_numbers_cover_every_row_and_column() -> None:
    assert set(paper_numbers.TABLE3) == {"Lower Bound", "Ours-Fix-Mat", "Ours-Pre", "Ours-Full", "Direct-FL",
                                         "Ours-Sim-FL"}
    assert all(len(values) == len(paper_numbers.TABLE3_COLUMNS) for values in paper_numbers.TABLE3.values())
    assert paper_numbers.TABLE3["Ours-Sim-FL"][1] == (93.45, 1.21)


def test_csv_has_one_line_per_test_volume() -> None:
    lines = list(csv.reader(io.StringIO(table3_report.volume_csv(ROWS))))
    assert lines[0] == list(table3_report.CSV_FIELDS)
    assert len(lines) == 1 + sum(len(r["test_dice"]) for r in ROWS)
    assert lines[1] == ["Lower Bound", "low", "A", "2", "0", "a", "0.8"]
    assert lines[4] == ["Lower Bound", "low", "A", "2", "1", "d", ""]


def test_box_stats_match_hand_computed_quartiles() -> None:
    box = box_stats([0.1, 0.8, 0.82, 0.84, 0.86, 0.88, float("nan")])
    # sorted 0.1, 0.8, 0.82, 0.84, 0.86, 0.88: linear quartiles at positions 1.25 and 3.75
    assert (box.q1, box.median, box.q3) == (pytest.approx(0.805), pytest.approx(0.83), pytest.approx(0.855))
    assert box.outliers == (0.1,) and (box.low, box.high) == (0.8, 0.88)  # 0.1 < 0.805 - 1.5 * 0.05
    with pytest.raises(ValueError, match="at least one value that is not NaN"):
        box_stats([float("nan")])


def test_written_files_follow_the_schema(tmp_path) -> None:
    manifest = {"format": "m", "cell_wall_s": {"x": 1.0}}
    paths = write_table3(tmp_path, ROWS, ["low"], ["data: tiny"], manifest)
    assert sorted(p.name for p in paths.values()) == [
        "table3.json", "table3_boxplot_A.png", "table3_boxplot_B.png", "table3_experiment.md",
        "table3_manifest.json", "table3_volumes.csv"]
    data = json.loads((tmp_path / "table3.json").read_text())
    assert data["schema"] == table3_report.SCHEMA
    assert set(data) == {"schema", "columns", "rows", "paper"}
    for row in data["rows"]:
        assert set(row) == {"method", "section", "cells"} and len(row["cells"]) == len(data["columns"])
        for cell in row["cells"]:
            if cell is not None:
                assert set(cell) == {"mean", "std", "folds", "fold_means", "volumes", "bold"}
                assert 0.0 <= cell["mean"] <= 1.0 and math.isfinite(cell["std"])
    assert data["paper"]["rows"]["Lower Bound"][0] == [87.65, 2.20]
    image = np.asarray(Image.open(tmp_path / "table3_boxplot_A.png"))
    assert image.ndim == 3 and image.shape[1] > image.shape[0] // 2 and (image < 255).any()
    assert json.loads((tmp_path / "table3_manifest.json").read_text()) == manifest
