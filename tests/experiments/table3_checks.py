"""What a finished Table 3 protocol run must have written, read back from its work dir and checked the same way
for the tiny protocol (:mod:`tests.experiments.test_table3_protocol`) and the demo preset
(:mod:`tests.experiments.test_table3_demo_preset`). Light on purpose: no TensorFlow import."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Sequence

from fedsim_tf.experiments import table3_report
from fedsim_tf.experiments.cells import ROWS


def read_ledger(work_dir: Path) -> dict[str, dict[str, Any]]:
    """Cell key -> its record under ``<work_dir>/experiment/cells/`` (the cells finished so far)."""
    return {path.stem: json.loads(path.read_text()) for path in sorted((work_dir / "experiment" / "cells").glob("*.json"))}


def read_outputs(work_dir: Path) -> dict[str, Any]:
    """The cell ledger and the report files of a protocol run whose ``--work_dir`` is ``work_dir``.

    Returns:
        ``ledger`` (:func:`read_ledger`), ``files`` (names under ``results/``),
        ``table`` (``table3.json``), ``markdown`` (``table3_experiment.md``), ``manifest`` and ``csv`` (the
        per-volume CSV's text).
    """
    results = work_dir / "results"
    return {"ledger": read_ledger(work_dir),
            "files": sorted(os.listdir(results)), "table": json.loads((results / "table3.json").read_text()),
            "markdown": (results / "table3_experiment.md").read_text(),
            "manifest": json.loads((results / "table3_manifest.json").read_text()),
            "csv": (results / "table3_volumes.csv").read_text()}


def assert_complete_report(outputs: dict[str, Any], *, cells: int, sites: Sequence[str], label_size: int,
                           test_volumes: int, data_folders: Sequence[str], synthetic_per_set: int,
                           training_volumes: int) -> None:
    """Every report file, every cell of the table filled (one fold, one label-size setting), the schema, the
    per-volume CSV, the manifest and the novelty records, for a run of ``cells`` planned cells over ``sites``,
    each with ``label_size`` labels, ``test_volumes`` test and ``training_volumes`` training volumes."""
    ledger = outputs["ledger"]
    assert len(ledger) == cells
    assert {"table3.json", "table3_experiment.md", "table3_volumes.csv", "table3_manifest.json",
            "table3_novelty_montage.png", *(f"table3_boxplot_{site}.png" for site in sites)} <= set(outputs["files"])
    table = outputs["table"]
    assert table["schema"] == table3_report.SCHEMA
    assert [c["site"] for c in table["columns"]] == list(sites)
    assert {c["label_size"] for c in table["columns"]} == {label_size}
    assert [row["method"] for row in table["rows"]] == list(ROWS)
    for row in table["rows"]:
        for cell in row["cells"]:
            assert cell is not None and cell["folds"] == 1 and 0.0 <= cell["mean"] <= 1.0
            assert cell["volumes"] == test_volumes
    volumes = list(csv.DictReader(io.StringIO(outputs["csv"])))
    assert len(volumes) == len(ROWS) * len(sites) * test_volumes
    assert {v["method"] for v in volumes} == set(ROWS) and {v["site"] for v in volumes} == set(sites)
    manifest = outputs["manifest"]
    assert sorted(manifest["cell_wall_s"]) == sorted(ledger) and manifest["total_cell_wall_s"] > 0
    assert manifest["data_folders"] == list(data_folders)
    markdown = outputs["markdown"]
    assert "data: " in markdown and "## The paper's Table 3" in markdown
    assert "## Novelty" in markdown and "## Out of distribution" in markdown
    novelty = [record["output"] for key, record in ledger.items() if "_novelty_" in key]
    assert sorted(n["site"] for n in novelty) == sorted(sites)
    for entry in novelty:  # the synthetic set against the site's training volumes (labelled and unlabelled)
        assert len(entry["samples"]) == synthetic_per_set and len(entry["nn_rms"]) == synthetic_per_set
        assert len(entry["training_ids"]) == training_volumes and len(entry["training_self_rms"]) == training_volumes
        assert Path(entry["montage"]).is_file()
    ood = [record["output"] for key, record in ledger.items() if "_ood_" in key]
    assert sorted(entry["site"] for entry in ood) == sorted(sites)
    for entry in ood:  # the site's network on its test volumes, real and as every site's GAN renders them
        assert len(entry["real"]) == test_volumes and sorted(entry["translated"]) == sorted(sites)
        assert all(sorted(dice) == sorted(entry["real"]) for dice in entry["translated"].values())
    tested = {site: {v["case"] for v in volumes if v["site"] == site} for site in sites}
    for entry in novelty:  # no test case among the volumes a generator was trained on
        assert not tested[entry["site"]] & set(entry["training_ids"])
