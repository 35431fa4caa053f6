"""Write Table 3's report files under ``<work_dir>/results/``: ``table3.json``, ``table3_experiment.md``
(``table3.md`` stays the collector of single runs, :mod:`fedsim_tf.evaluation.report`),
``table3_volumes.csv``, ``table3_boxplot_<site>.png`` and ``table3_manifest.json``; every file atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedsim_tf.experiments import table3_report
from fedsim_tf.experiments.boxplot import write_boxplot
from fedsim_tf.experiments.cells import ROWS
from fedsim_tf.experiments.report_files import write_report_files


def boxplot_groups(rows: Sequence[Mapping[str, Any]], site: str) -> list[tuple[str, list[float]]]:
    """The per-volume Dice of ``site`` grouped by row and label-size setting, in Table 3's order."""
    groups: dict[str, list[float]] = {}
    for method in ROWS:
        for row in rows:
            if row["site"] == site and row["method"] == method:
                label = f"{method} {row['setting']}".strip()
                groups.setdefault(label, []).extend(
                    float("nan") if v is None else float(v) for v in row["test_dice"].values())
    return list(groups.items())


def write_table3(results_dir: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]], settings: Sequence[str],
                 provenance: Sequence[str], manifest: Mapping[str, Any]) -> dict[str, Path]:
    """Write every report file; returns name -> path."""
    folder = Path(results_dir)
    summary = table3_report.summarise(rows, settings)
    paths = write_report_files(folder, 3, summary, table3_report.markdown(summary, provenance), rows, manifest)
    for site in dict.fromkeys(row["site"] for row in rows):
        path = folder / f"table3_boxplot_{site}.png"
        write_boxplot(path, f"{site}: test Dice per volume, all folds", boxplot_groups(rows, site))
        paths[f"boxplot_{site}"] = path
    return paths
