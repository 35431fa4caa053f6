"""The whole Table 3 protocol on two tiny sites, one fold (subprocess :mod:`tests.experiments.table3_harness`:
the federated cells need one logical device per site): every report file, every cell of the table filled,
the schema, a rerun that runs no cell again, and (slow) a run killed mid-cell and rerun that ends with the
uninterrupted run's table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.experiments.table3_checks import assert_complete_report

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
    assert observed["ledger"] == observed["first"]  # the rerun ran no cell (records and wall times unchanged)
    # 5 cases per site: 3 training (L = 2 labelled), 1 validation, 1 test; 2 synthetic volumes per set
    assert_complete_report(observed, cells=CELLS, sites=("A", "B"), label_size=2, test_volumes=1,
                           data_folders=(str(root / "A"), str(root / "B")), synthetic_per_set=2, training_volumes=3)


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
