"""The whole Table 3 protocol on two tiny sites, one fold (subprocess :mod:`tests.experiments.table3_harness`:
the federated cells need one logical device per site): every report file, every cell of the table filled,
the schema, and a rerun that runs no cell again. About 2.5 min on 2 cores, hence slow."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedsim_tf.experiments import table3_report
from fedsim_tf.experiments.cells import ROWS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_protocol_writes_every_report_file_with_every_cell_and_reruns_nothing(tmp_path: Path) -> None:
    out = tmp_path / "observed.json"
    result = subprocess.run([sys.executable, "-m", "tests.experiments.table3_harness", str(out), str(tmp_path)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"},
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]
    observed = json.loads(out.read_text())
    assert len(observed["cells"]) == 29 and sorted(observed["first"]) == sorted(observed["cells"])
    assert observed["second"] == observed["first"]  # the rerun ran no cell (records and wall times unchanged)
    assert {"table3.json", "table3_experiment.md", "table3_volumes.csv", "table3_manifest.json",
            "table3_boxplot_A.png", "table3_boxplot_B.png"} <= set(observed["files"])
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
    assert manifest["data_folders"] == [str(tmp_path / "A"), str(tmp_path / "B")]
    assert "data: " in observed["markdown"] and "## The paper's Table 3" in observed["markdown"]
