"""The protocol's record of finished cells: one JSON per cell under ``<work_dir>/experiment/cells/``.

A cell's record holds the fingerprint of the stage settings it ran with, its wall time and what it
produced (a ``segment`` cell: its per-volume results). A cell counts as finished only when its record
exists with the same fingerprint, so a rerun skips it, and a rerun with other settings runs it again
(where the stage itself refuses to mix settings in one run folder, it says so). A cell interrupted
before its record is written is run again; the stages resume it from their own checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedsim_tf.atomic import write_json_atomic

LEDGER_FORMAT = "fedsim-experiment-cell-v1"


def fingerprint(settings: Any) -> str:
    """SHA-256 of ``settings`` as canonical JSON (values JSON cannot hold are written with ``str``)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Ledger:
    """The cell records of one work dir.

    Args:
        folder: where the records live (``<work_dir>/experiment/cells``).
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def read(self, key: str) -> dict[str, Any] | None:
        """The record of cell ``key``, or None when it has none (or an unreadable one)."""
        try:
            data = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("format") == LEDGER_FORMAT else None

    def finished(self, key: str, print_: str) -> dict[str, Any] | None:
        """The record of cell ``key`` when it finished with the settings of fingerprint ``print_``."""
        record = self.read(key)
        return record if record is not None and record.get("fingerprint") == print_ else None

    def write(self, key: str, print_: str, wall_s: float, output: Mapping[str, Any]) -> dict[str, Any]:
        """Record cell ``key`` as finished (atomically); returns the record."""
        record = {"format": LEDGER_FORMAT, "key": key, "fingerprint": print_, "wall_s": round(float(wall_s), 2),
                  "output": dict(output)}
        write_json_atomic(self.path(key), record)
        return record
