"""Table 2 (the ablation, trained only on synthetic data) of the protocol's results: ``table2.json``,
``table2_experiment.md`` beside the paper's numbers and ``table2_volumes.csv``, under ``<work_dir>/results/``.

Input rows are what ``segment`` cells record (:func:`fedsim_tf.experiments.table3_cells.segment_rows`), one
per Table 2 row, setting and fold. A cell is the mean ± std over folds of the fold means, as in Table 3
(:func:`fedsim_tf.experiments.table3_report.fold_cell`).

``table2.json`` schema ``"fedsim-table2-v1"``::

    {"schema": "fedsim-table2-v1", "site": str,
     "columns": [{"setting": str, "label_size": int}],
     "rows": [{"method": str, "paper": float,                   # the paper's Dice in %
               "cells": [null | {"mean": float, "std": float, "folds": int,   # Dice in [0, 1]
                                 "fold_means": [float], "volumes": int, "bold": bool}]}],
     "paper": {"source": str}}
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedsim_tf.experiments import paper_numbers
from fedsim_tf.experiments.cells import TABLE2_ROWS
from fedsim_tf.experiments.report_files import write_report_files
from fedsim_tf.experiments.table3_report import bold_best, fold_cell, percent_cell

SCHEMA = "fedsim-table2-v1"


def summarise(rows: Sequence[Mapping[str, Any]], settings: Sequence[str]) -> dict[str, Any]:
    """The ``table2.json`` record of ``rows`` (one site) and label-size ``settings``; bold: the best mean
    of each column."""
    sizes = {r["setting"]: int(r["label_size"]) for r in rows}
    cols = [{"setting": s, "label_size": sizes[s]} for s in settings if s in sizes]
    table = [{"method": method, "paper": paper_numbers.TABLE2[method],
              "cells": [fold_cell([r for r in rows if r["method"] == method and r["setting"] == c["setting"]])
                        for c in cols]}
             for method in TABLE2_ROWS]
    bold_best(table, len(cols))
    site = rows[0]["site"] if rows else ""
    return {"schema": SCHEMA, "site": site, "columns": cols, "rows": table, "paper": {"source": paper_numbers.SOURCE}}


def markdown(summary: Mapping[str, Any], provenance: Sequence[str]) -> str:
    """``table2_experiment.md``: provenance lines, then per row our Dice (%) per setting beside the paper's."""
    titles = [f"{summary['site']} L={c['label_size']}" + (f" ({c['setting']})" if c["setting"] else "")
              for c in summary["columns"]]
    lines = ["| Method | " + " | ".join(titles) + " | paper (CT20 L=4) |", "|---|" + "---|" * (len(titles) + 1)]
    best = max(paper_numbers.TABLE2.values())
    for row in summary["rows"]:
        paper = f"{row['paper']:.2f}"
        lines.append(f"| {row['method']} | " + " | ".join(percent_cell(c) for c in row["cells"]) + " | "
                     + (f"**{paper}**" if row["paper"] == best else paper) + " |")
    folds = sorted({c["folds"] for row in summary["rows"] for c in row["cells"] if c is not None})
    return "\n".join([
        "# Table 2: ablation, 3D U-Net trained only on synthetic data (Ours-Fix-Mat setting), test Dice (%)", "",
        *(f"- {line}" for line in provenance),
        f"- folds per cell: {', '.join(map(str, folds)) or 'none'}; ours: mean ± std over folds, bold the best "
        f"mean of a column; paper: {paper_numbers.SOURCE}, typed from the paper, not measured here", "",
        *lines, ""])


def write_table2(results_dir: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]], settings: Sequence[str],
                 provenance: Sequence[str], manifest: Mapping[str, Any]) -> dict[str, Path]:
    """Write ``table2.json``, ``table2_experiment.md``, ``table2_volumes.csv`` and ``table2_manifest.json``
    atomically; returns name -> path."""
    summary = summarise(rows, settings)
    return write_report_files(results_dir, 2, summary, markdown(summary, provenance), rows, manifest)
