"""One progress line over the whole protocol: cells done / total, the wall time of the finished cells, and
an ETA from those wall times.

The ETA of a cell still to run is the mean wall time of the finished cells of its kind
(:attr:`~fedsim_tf.experiments.cells.Cell.kind`), else of every finished cell; with no finished cell
there is no ETA yet.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from fedsim_tf.experiments.cells import Cell
from fedsim_tf.training.progress import format_seconds


def eta_seconds(remaining: Sequence[Cell], walls: Mapping[str, float], cells: Sequence[Cell]) -> float | None:
    """Expected seconds for ``remaining`` from ``walls`` (cell key -> wall seconds of finished cells of
    ``cells``); None when no cell has finished."""
    by_kind: dict[str, list[float]] = defaultdict(list)
    for cell in cells:
        if cell.key in walls:
            by_kind[cell.kind].append(walls[cell.key])
    every = [w for ws in by_kind.values() for w in ws]
    if not every:
        return None
    overall = sum(every) / len(every)
    return sum(sum(by_kind[c.kind]) / len(by_kind[c.kind]) if by_kind[c.kind] else overall for c in remaining)


def progress_line(cells: Sequence[Cell], walls: Mapping[str, float], current: Cell | None) -> str:
    """``experiment cells 12/58 | finished cells 0:41:07 | ETA 1:02:10 | next <key>``."""
    done = [c for c in cells if c.key in walls]
    remaining = [c for c in cells if c.key not in walls]
    eta = eta_seconds(remaining, walls, cells)
    text = (f"experiment cells {len(done)}/{len(cells)} | finished cells {format_seconds(sum(walls[c.key] for c in done))}"
            f" | ETA {format_seconds(eta) if eta is not None else '--:--'}")
    return text + (f" | next {current.key}" if current is not None else "")
