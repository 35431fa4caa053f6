"""The report files every table of the protocol writes under ``<work_dir>/results/``, each atomically:
``table<N>.json`` (the summary), ``table<N>_experiment.md``, ``table<N>_volumes.csv`` (Dice per test volume,
:func:`fedsim_tf.experiments.table3_report.volume_csv`) and ``table<N>_manifest.json``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedsim_tf.atomic import write_json_atomic, write_text_atomic
from fedsim_tf.experiments.table3_report import volume_csv


def write_report_files(results_dir: str | os.PathLike[str], table: int, summary: Mapping[str, Any], markdown: str,
                       rows: Sequence[Mapping[str, Any]], manifest: Mapping[str, Any]) -> dict[str, Path]:
    """Write Table ``table``'s summary, Markdown, per-volume CSV of ``rows`` and manifest; returns name -> path."""
    folder = Path(results_dir)
    return {
        "json": write_json_atomic(folder / f"table{table}.json", summary),
        "markdown": write_text_atomic(folder / f"table{table}_experiment.md", markdown),
        "csv": write_text_atomic(folder / f"table{table}_volumes.csv", volume_csv(rows)),
        # the manifest holds settings objects (paths, tuples): written with str where JSON has no type
        "manifest": write_text_atomic(folder / f"table{table}_manifest.json",
                                      json.dumps(manifest, indent=2, default=str) + "\n"),
    }
