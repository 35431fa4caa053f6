"""What produced an experiment's results: the command line, every stage setting, the code's commit, the
data folders and the wall time of every cell (``manifest.json``)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

MANIFEST_FORMAT = "fedsim-experiment-manifest-v1"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def git_commit(root: str = ROOT) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository at ``root`` (None: not a git
    checkout, or git missing)."""
    try:
        sha = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                             timeout=30).stdout.strip()
        status = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha, "dirty": bool(status.strip())}


def build_manifest(table: int, command_line: Sequence[str], settings: Any, data_folders: Sequence[str],
                   records: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The manifest record.

    Args:
        table: the paper's table reproduced.
        command_line: the arguments the run was started with (presets appear as ``--flagfile=``).
        settings: the stage settings (a dataclass), recorded as JSON values.
        data_folders: the site folders the sites were read from.
        records: cell key -> ledger record (:mod:`fedsim_tf.experiments.ledger`), in protocol order.
    """
    walls = {key: record["wall_s"] for key, record in records.items()}
    return {"format": MANIFEST_FORMAT, "table": table, "command_line": list(command_line),
            "settings": dataclasses.asdict(settings), "code": git_commit(), "data_folders": list(data_folders),
            "cell_wall_s": walls, "total_cell_wall_s": round(sum(walls.values()), 2)}
