"""Run a protocol's cells in order: skip those the ledger holds as finished, run the others, record each
one's wall time, and log one progress line over the whole protocol before every cell."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from absl import logging

from fedsim_tf.experiments.cells import Cell
from fedsim_tf.experiments.ledger import Ledger, fingerprint
from fedsim_tf.experiments.progress import progress_line


def run_cells(
    cells: Sequence[Cell],
    ledger: Ledger,
    settings_of: Callable[[Cell], Any],
    execute: Callable[[Cell], Mapping[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Run every cell not yet finished with its current settings, in order.

    Args:
        cells: the protocol's cells, in dependency order.
        ledger: where finished cells are recorded.
        settings_of: a cell's stage settings (JSON-able; their fingerprint tells a finished cell).
        execute: runs one cell and returns its output (JSON-able), recorded in the ledger.

    Returns:
        Cell key -> its ledger record, for every cell.
    """
    prints = {cell.key: fingerprint(settings_of(cell)) for cell in cells}
    records = {}
    for cell in cells:
        record = ledger.finished(cell.key, prints[cell.key])
        if record is not None:
            records[cell.key] = record
    walls = {key: float(record["wall_s"]) for key, record in records.items()}
    if records:
        logging.info("experiment: %d of %d cells finished earlier; skipping them", len(records), len(cells))
    for cell in cells:
        if cell.key in records:
            continue
        logging.info("%s", progress_line(cells, walls, cell))
        started = time.monotonic()
        output = execute(cell)
        wall = time.monotonic() - started
        records[cell.key] = ledger.write(cell.key, prints[cell.key], wall, output)
        walls[cell.key] = wall
    logging.info("%s", progress_line(cells, walls, None))
    return records
