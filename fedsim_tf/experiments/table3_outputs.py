"""Write Table 3's report files under ``<work_dir>/results/``: ``table3.json``, ``table3_experiment.md``
(``table3.md`` stays the collector of single runs, :mod:`fedsim_tf.evaluation.report`; the novelty and
out-of-distribution sections follow the table), ``table3_volumes.csv``, ``table3_boxplot_<site>.png``,
``table3_novelty_montage.png`` and ``table3_manifest.json``; every file atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedsim_tf.experiments import ood, table3_novelty, table3_report
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
                 provenance: Sequence[str], manifest: Mapping[str, Any], novelty: Sequence[Mapping[str, Any]] = (),
                 out_of_distribution: Sequence[Mapping[str, Any]] = ()) -> dict[str, Path]:
    """Write every report file; returns name -> path.

    Args:
        rows: the ``segment`` cells' rows (:func:`fedsim_tf.experiments.table3_cells.segment_rows`).
        novelty: the ``novelty`` cells' outputs (:func:`fedsim_tf.experiments.table3_novelty.execute`), in order.
        out_of_distribution: the ``ood`` cells' outputs (:func:`fedsim_tf.experiments.ood.execute`), in order.
    """
    folder = Path(results_dir)
    summary = table3_report.summarise(rows, settings)
    text = table3_report.markdown(summary, provenance)
    if novelty:
        text += "\n" + "\n".join(table3_novelty.markdown_lines(novelty))
    if out_of_distribution:
        text += "\n" + "\n".join(ood.markdown_lines(out_of_distribution))
    paths = write_report_files(folder, 3, summary, text, rows, manifest)
    if novelty:
        paths["novelty_montage"] = table3_novelty.write_montage_sheet(folder / "table3_novelty_montage.png", novelty)
    for site in dict.fromkeys(row["site"] for row in rows):
        path = folder / f"table3_boxplot_{site}.png"
        write_boxplot(path, f"{site}: test Dice per volume, all folds", boxplot_groups(rows, site))
        paths[f"boxplot_{site}"] = path
    return paths
