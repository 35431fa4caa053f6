"""Segmentation results: one JSON per run and Table 3-style Markdown, all written atomically.

**Run JSON** (``<work_dir>/results/<run_name>.json``), schema ``"fedsim-segment-result-v2"``::

    {
      "schema": "fedsim-segment-result-v2",
      "run_name": str,                 # file stem, e.g. "segment_lower_CT20_L4_cicek"
      "method": str,                   # Table 3 row, e.g. "Lower Bound"
      "site": str, "label_size": int,  # label_size: labelled training volumes used (upper: all)
      "seed": int,
      "config": {...},                 # every setting of the run (flags), JSON values
      "folds": [                       # one entry per finished fold, in fold order
        {"fold": int, "test_dice": {case_id: float | null},  # per-volume Dice in [0, 1]
         "mean": float, "std": float,  # over this fold's test volumes
         "best_val_dice": float, "best_step": int, "steps": int}
      ],
      "mean": float, "std": float,     # over all test volumes of all folds (NaN excluded)
      "fold_mean": float, "fold_std": float,  # mean and std of the per-fold means
      "pretrain": null | [               # finetune, sim_fl: per fold, the synthetic pre-training;
          {"fold": int, "source": str,       #   the synthetic folder pre-trained on (direct_fl: the
                                             #   federated weights file fine-tuned from),
           "cases": [str],                   #   its labelled case ids used (direct_fl: "<site>/<case>"
                                             #   of every site),
           "steps": int}],                   #   pre-training steps or federated rounds (before "steps")
      "versions": {"python", "numpy", "tensorflow", "keras"}
    }

Dice of a volume with an empty ground truth is ``null`` (NaN) and excluded from means; std is the
population std (ddof=0). **Markdown**: ``<run_name>.md`` holds the run's row, and
``table3.md`` collects every run JSON in the folder into one table (rows: methods in the paper's
order -- Lower Bound, the synthetic pre-trainings, Upper Bound, Direct-FL, Ours-Sim-FL --, columns:
site and label size, cells ``mean ± std`` in % over volumes).
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedsim_tf import atomic
from fedsim_tf.evaluation.dice import mean_std

RESULT_SCHEMA = "fedsim-segment-result-v2"
TABLE_NAME = "table3.md"
ROW_RANKS: dict[str, int] = {"Lower Bound": 0, "Upper Bound": 2, "Direct-FL": 3, "Ours-Sim-FL": 4}
"""Row order of Table 3 (paper): other methods (the single-site synthetic pre-trainings) rank 1."""


def _json_value(value: Any) -> Any:
    """NaN -> None, NumPy scalars -> Python, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json_atomic(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented JSON (NaN written as null) atomically."""
    return atomic.write_json_atomic(path, _json_value(data))


def versions() -> dict[str, str]:
    """Versions of Python and the numeric libraries (recorded in every run JSON)."""
    import keras
    import tensorflow as tf

    return {"python": platform.python_version(), "numpy": np.__version__,
            "tensorflow": tf.__version__, "keras": keras.__version__}


def fold_entry(
    fold: int, test_dice: Mapping[str, float], best_val_dice: float, best_step: int, steps: int
) -> dict[str, Any]:
    """One fold's record (schema in the module docstring)."""
    mean, std = mean_std(test_dice.values())
    return {"fold": int(fold), "test_dice": dict(test_dice), "mean": mean, "std": std,
            "best_val_dice": float(best_val_dice), "best_step": int(best_step), "steps": int(steps)}


def build_report(
    run_name: str,
    method: str,
    site: str,
    label_size: int,
    seed: int,
    config: Mapping[str, Any],
    folds: Sequence[Mapping[str, Any]],
    pretrain: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The run record: per-fold entries (from :func:`fold_entry`) plus means and stds.

    ``pretrain`` describes the synthetic pre-training of a finetune run (schema in the module
    docstring); None for runs trained on real volumes only.
    """
    values = [v if v is not None else float("nan") for f in folds for v in f["test_dice"].values()]
    mean, std = mean_std(values)
    fold_mean, fold_std = mean_std(f["mean"] if f["mean"] is not None else float("nan") for f in folds)
    return {"schema": RESULT_SCHEMA, "run_name": run_name, "method": method, "site": site,
            "label_size": int(label_size), "seed": int(seed), "config": dict(config),
            "folds": [dict(f) for f in folds], "mean": mean, "std": std,
            "fold_mean": fold_mean, "fold_std": fold_std,
            "pretrain": None if pretrain is None else [dict(p) for p in pretrain], "versions": versions()}


def format_cell(mean: float | None, std: float | None) -> str:
    """``"87.65 ± 2.20"`` from fractions (Dice in [0, 1]); ``"n/a"`` when the mean is missing."""
    if mean is None or math.isnan(mean):
        return "n/a"
    return f"{100 * mean:.2f} ± {100 * (std or 0.0):.2f}"


def markdown_table(reports: Sequence[Mapping[str, Any]]) -> str:
    """A Table 3-style Markdown table: one row per method (:data:`ROW_RANKS`, then first appearance), one
    column per (site, label size)."""
    columns = sorted({(r["site"], int(r["label_size"])) for r in reports})
    methods = sorted(dict.fromkeys(r["method"] for r in reports), key=lambda method: ROW_RANKS.get(method, 1))
    cells = {(r["method"], r["site"], int(r["label_size"])): format_cell(r["mean"], r["std"]) for r in reports}
    header = "| Method | " + " | ".join(f"{site} L={size}" for site, size in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    for method in methods:
        row = [cells.get((method, site, size), "") for site, size in columns]
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_report(results_dir: str | os.PathLike[str], report: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``<run_name>.json`` and ``<run_name>.md``, then refresh ``table3.md`` over every run JSON.

    Returns:
        ``(json_path, table_path)``.
    """
    results_dir = Path(results_dir)
    json_path = write_json_atomic(results_dir / f"{report['run_name']}.json", report)
    atomic.write_text_atomic(results_dir / f"{report['run_name']}.md", markdown_table([_json_value(report)]))
    reports = []
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("schema") == RESULT_SCHEMA:
            reports.append(data)
    table_path = atomic.write_text_atomic(results_dir / TABLE_NAME, markdown_table(reports))
    return json_path, table_path
