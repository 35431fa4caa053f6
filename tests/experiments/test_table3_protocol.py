"""The whole Table 3 protocol on two tiny sites, one fold (subprocess :mod:`tests.experiments.table3_harness`:
the federated cells need one logical device per site): every report file, every cell of the table filled,
the schema, a rerun that runs no cell again, and (slow) a run killed mid-cell and rerun that ends with the
uninterrupted run's table."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fedsim_tf.experiments import table3_report
from fedsim_tf.experiments.cells import ROWS

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
CELLS = 29 + 2 + 2  # 29 stage cells, a novelty and an out-of-distribution cell per site
KILL_AFTER_CELLS = 18  # the first segment cells of site A have run: the kill lands in a U-Net's training


def _harness(out: Path, root: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "tests.experiments.table3_harness", str(out), str(root), *options]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("uninterrupted")
    result = subprocess.run(_harness(root / "observed.json", root), cwd=ROOT, env=ENV, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]
    return {"root": root, **json.loads((root / "observed.json").read_text())}


def test_tiny_protocol_writes_every_report_file_with_every_cell_and_reruns_nothing(uninterrupted: dict) -> None:
    observed, root = uninterrupted, uninterrupted["root"]
    assert len(observed["cells"]) == CELLS and sorted(observed["first"]) == sorted(observed["cells"])
    assert observed["second"] == observed["first"]  # the rerun ran no cell (records and wall times unchanged)
    assert {"table3.json", "table3_experiment.md", "table3_volumes.csv", "table3_manifest.json",
            "table3_boxplot_A.png", "table3_boxplot_B.png", "table3_novelty_montage.png"} <= set(observed["files"])
    table = observed["table"]
    assert table["schema"] == table3_report.SCHEMA
    assert [c["site"] for c in table["columns"]] == ["A", "B"] and {c["label_size"] for c in table["columns"]} == {2}
    assert [row["method"] for row in table["rows"]] == list(ROWS)
    for row in table["rows"]:
        for cell in row["cells"]:
            assert cell is not None and cell["folds"] == 1 and 0.0 <= cell["mean"] <= 1.0 and cell["volumes"] == 1
    volumes = list(csv.DictReader(io.StringIO(observed["csv"])))
    assert len(volumes) == 7 * 2  # 7 rows x 2 sites x 1 test volume (5 cases: 3 train, 1 val, 1 test)
    assert {v["method"] for v in volumes} == set(ROWS)
    manifest = observed["manifest"]
    assert sorted(manifest["cell_wall_s"]) == sorted(observed["cells"]) and manifest["total_cell_wall_s"] > 0
    assert manifest["data_folders"] == [str(root / "A"), str(root / "B")]
    markdown = observed["markdown"]
    assert "data: " in markdown and "## The paper's Table 3" in markdown
    assert "## Novelty" in markdown and "## Out of distribution" in markdown
    novelty = [record["output"] for key, record in observed["first"].items() if "_novelty_" in key]
    assert sorted(n["site"] for n in novelty) == ["A", "B"]
    for entry in novelty:  # 2 synthetic volumes against the site's 3 training volumes (labelled and unlabelled)
        assert len(entry["samples"]) == 2 and len(entry["training_ids"]) == 3 and len(entry["nn_rms"]) == 2
        assert len(entry["training_self_rms"]) == 3 and Path(entry["montage"]).is_file()


def _table_of(observed: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on an interruption: the summary, the per-volume CSV and the novelty and
    out-of-distribution numbers (not their paths or wall times)."""
    studies = {key: {k: v for k, v in record["output"].items() if k not in ("montage", "synthetic_dir")}
               for key, record in observed["first"].items() if "_novelty_" in key or "_ood_" in key}
    return {"table": observed["table"], "csv": observed["csv"], "studies": studies}


@pytest.mark.slow
def test_protocol_killed_mid_cell_and_rerun_ends_with_the_uninterrupted_table(uninterrupted: dict,
                                                                              tmp_path: Path) -> None:
    cells = tmp_path / "work" / "experiment" / "cells"
    process = subprocess.Popen(_harness(tmp_path / "killed.json", tmp_path, "--once"), cwd=ROOT, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 900
        while process.poll() is None and time.monotonic() < deadline:
            if cells.is_dir() and len(list(cells.glob("*.json"))) >= KILL_AFTER_CELLS:
                time.sleep(3.0)  # into the next cell
                break
            time.sleep(0.5)
        assert process.poll() is None, "the protocol ended before it could be killed"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finished = len(list(cells.glob("*.json")))
    assert KILL_AFTER_CELLS <= finished < CELLS
    result = subprocess.run(_harness(tmp_path / "resumed.json", tmp_path, "--once"), cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]
    resumed = json.loads((tmp_path / "resumed.json").read_text())
    assert len(resumed["first"]) == CELLS
    assert _table_of(resumed) == _table_of(uninterrupted)
