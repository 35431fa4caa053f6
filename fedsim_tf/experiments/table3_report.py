"""Table 3 of the protocol's results: a summary (JSON), Markdown beside the paper's own numbers, and
per-volume CSV (plain Python and NumPy).

Input rows are what ``segment`` cells record (:func:`fedsim_tf.experiments.table3_cells.segment_rows`):
``method``, ``setting`` (label-size setting; ``""`` for the Upper Bound), ``site``, ``label_size``,
``fold``, ``test_dice`` (case -> Dice in [0, 1] or null).

A table cell is the mean ± std over folds of the fold means (each fold's mean over its test volumes,
null Dice excluded; population std, ddof=0), in %. Columns are (site, label-size setting), sites in
order of first appearance and settings in the order given; the Upper Bound uses every training label
and fills every column of its site. Bold: the highest mean of a column within each section of the paper
-- single site (Lower Bound, Ours-Fix-Mat, Ours-Pre, Ours-Full) and federated (Direct-FL, Ours-Sim-FL);
the Upper Bound, which has labels the methods do not, is not ranked (as in the paper).

``table3.json`` schema ``"fedsim-table3-v1"``::

    {"schema": "fedsim-table3-v1",
     "columns": [{"site": str, "setting": str, "label_size": int}],
     "rows": [{"method": str, "section": "single site" | "federated",
               "cells": [null | {"mean": float, "std": float, "folds": int,   # Dice in [0, 1]
                                 "fold_means": [float], "volumes": int, "bold": bool}]}],
     "paper": {"source": str, "columns": [[site, L]], "rows": {method: [[mean %, std %]]}}}
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from fedsim_tf.evaluation.dice import mean_std
from fedsim_tf.experiments import paper_numbers
from fedsim_tf.experiments.cells import FEDERATED_ROWS, ROWS, SINGLE_SITE_ROWS

SCHEMA = "fedsim-table3-v1"
UNRANKED: tuple[str, ...] = ("Upper Bound",)
CSV_FIELDS: tuple[str, ...] = ("method", "setting", "site", "label_size", "fold", "case", "dice")


def _nan_to_none(value: float) -> float | None:
    return None if value != value else value


def columns(rows: Sequence[Mapping[str, Any]], settings: Sequence[str]) -> list[dict[str, Any]]:
    """(site, setting, label size) of every column: the rows' sites in order of appearance, then ``settings``
    in order; the label size is that of the site's rows of the setting (Upper Bound rows aside)."""
    sizes = {(r["site"], r["setting"]): int(r["label_size"]) for r in rows if r["method"] not in UNRANKED}
    sites = list(dict.fromkeys(r["site"] for r in rows))
    return [{"site": site, "setting": setting, "label_size": sizes[site, setting]}
            for site in sites for setting in settings if (site, setting) in sizes]


def fold_cell(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """One table cell of ``rows`` (mean ± std over folds of the fold means, module docstring); None when empty."""
    if not rows:
        return None
    by_fold: dict[int, list[float]] = {}
    for row in rows:
        values = [float("nan") if v is None else float(v) for v in row["test_dice"].values()]
        by_fold.setdefault(int(row["fold"]), []).extend(values)
    fold_means = [mean_std(values)[0] for _, values in sorted(by_fold.items())]
    mean, std = mean_std(fold_means)
    return {"mean": _nan_to_none(mean), "std": _nan_to_none(std), "folds": len(fold_means),
            "fold_means": [_nan_to_none(m) for m in fold_means],
            "volumes": sum(v is not None for row in rows for v in row["test_dice"].values()), "bold": False}


def bold_best(ranked: Sequence[Mapping[str, Any]], count: int) -> None:
    """Set ``bold`` on the cell(s) of the highest mean in each of the ``count`` columns of the ``ranked`` rows
    (``{"cells": [cell or None]}``)."""
    for index in range(count):
        means = [row["cells"][index]["mean"] for row in ranked if row["cells"][index] is not None
                 and row["cells"][index]["mean"] is not None]
        for row in ranked:
            cell = row["cells"][index]
            if cell is not None and means and cell["mean"] == max(means):
                cell["bold"] = True


def summarise(rows: Sequence[Mapping[str, Any]], settings: Sequence[str]) -> dict[str, Any]:
    """The ``table3.json`` record (schema in the module docstring) of ``rows`` and label-size ``settings``."""
    cols = columns(rows, settings)
    methods = [m for m in ROWS if any(r["method"] == m for r in rows)]
    table = []
    for method in methods:
        cells = []
        for col in cols:
            chosen = [r for r in rows if r["method"] == method and r["site"] == col["site"] and
                      (method in UNRANKED or r["setting"] == col["setting"])]
            cells.append(fold_cell(chosen))
        table.append({"method": method, "section": "federated" if method in FEDERATED_ROWS else "single site",
                      "cells": cells})
    for section in (SINGLE_SITE_ROWS, FEDERATED_ROWS):
        bold_best([row for row in table if row["method"] in section and row["method"] not in UNRANKED], len(cols))
    paper = {"source": paper_numbers.SOURCE, "columns": [list(c) for c in paper_numbers.TABLE3_COLUMNS],
             "rows": {method: [list(v) for v in values] for method, values in paper_numbers.TABLE3.items()},
             "upper_bound": {site: list(v) for site, v in paper_numbers.TABLE3_UPPER_BOUND.items()}}
    return {"schema": SCHEMA, "columns": cols, "rows": table, "paper": paper}


def percent_cell(cell: Mapping[str, Any] | None) -> str:
    """A cell in % (``mean ± std``, bold where marked; ``n/a`` when empty)."""
    if cell is None or cell["mean"] is None:
        return "n/a"
    text = f"{100 * cell['mean']:.2f} ± {100 * (cell['std'] or 0.0):.2f}"
    return f"**{text}**" if cell["bold"] else text


def _header(titles: Sequence[str]) -> list[str]:
    return ["| Section | Method | " + " | ".join(titles) + " |", "|---|---|" + "---|" * len(titles)]


def ours_markdown(summary: Mapping[str, Any]) -> str:
    """Our Table 3 as Markdown (cells in %, folds counted in the title line of each column)."""
    titles = [f"{c['site']} L={c['label_size']}" + (f" ({c['setting']})" if c["setting"] else "")
              for c in summary["columns"]]
    lines = _header(titles)
    for row in summary["rows"]:
        lines.append(f"| {row['section']} | {row['method']} | " + " | ".join(percent_cell(c) for c in row["cells"])
                     + " |")
    return "\n".join(lines) + "\n"


def paper_markdown() -> str:
    """The paper's Table 3 as Markdown, its bold as printed."""
    titles = [f"{site} L={size}" for site, size in paper_numbers.TABLE3_COLUMNS]
    lines = _header(titles)
    for method in ROWS:
        if method == "Upper Bound":
            values = [paper_numbers.TABLE3_UPPER_BOUND[site] for site, _ in paper_numbers.TABLE3_COLUMNS]
        else:
            values = list(paper_numbers.TABLE3[method])
        cells = [f"{m:.2f} ± {s:.2f}" for m, s in values]
        cells = [f"**{c}**" if (method, i) in paper_numbers.TABLE3_BOLD else c for i, c in enumerate(cells)]
        section = "federated" if method in FEDERATED_ROWS else "single site"
        lines.append(f"| {section} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(summary: Mapping[str, Any], provenance: Sequence[str]) -> str:
    """``table3_experiment.md``: provenance lines, our table, the paper's beside it."""
    folds = sorted({c["folds"] for row in summary["rows"] for c in row["cells"] if c is not None})
    return "\n".join([
        "# Table 3: 3D U-Net test Dice (%), mean ± std over folds", "",
        *(f"- {line}" for line in provenance),
        f"- folds per cell: {', '.join(map(str, folds)) or 'none'}; bold: best mean of a column within its section "
        "(the Upper Bound, with every training label, is not ranked)", "",
        "## This run", "", ours_markdown(summary),
        f"## The paper's Table 3, for comparison ({paper_numbers.SOURCE}; typed from the paper, not measured here)",
        "", paper_markdown(),
    ])


def volume_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per test volume: :data:`CSV_FIELDS` (Dice in [0, 1], empty when null)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for row in rows:
        for case, dice in row["test_dice"].items():
            writer.writerow([row["method"], row["setting"], row["site"], row["label_size"], row["fold"], case,
                             "" if dice is None else repr(float(dice))])
    return buffer.getvalue()
