"""Explicit label tables: raw label values in a site's files -> structure indices 0..7.

Indices follow :mod:`fedsim_tf.anatomy` (1 ``lv_myo`` .. 7 ``pa``; 0 background).

* ``MMWHS_TABLE``: MM-WHS codes 205, 420, 500, 550, 600, 820, 850 -> 1..7 (from the anatomy table).
* ``IMAGECHD_TABLE``: ImageCHD values in the order the ImageCHD paper lists the structures,
  1 LV blood pool, 2 RV, 3 LA, 4 RA, 5 LV myocardium, 6 aorta, 7 pulmonary artery; values 8..15
  (extra vessels of congenital anatomies) -> background. Public loaders disagree on this order,
  so a site may override it with a JSON file (:func:`load_label_table`)::

      {"name": "imagechd-alt", "labels": {"1": "lv_myo", "2": "la", "3": "lv", "4": "ra",
                                          "5": "rv", "6": "aorta", "7": "pa", "8": "background"}}

  Keys are raw values; values are anatomy short names, ``"background"``, or indices 0..7.
  Raw value 0 is always background.

Stray values (anything not in the table, including non-integers) are handled by
``on_unknown``: ``"error"`` (default) raises a :class:`DataError` naming the file and listing the
stray values; ``"background"`` maps them to 0.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from fedsim_tf.anatomy import MMWHS_CODE_TO_INDEX, NAME_TO_INDEX, NUM_STRUCTURES
from fedsim_tf.data.errors import DataError
from fedsim_tf.data.layouts import check_layout

ON_UNKNOWN: tuple[str, ...] = ("error", "background")

# Largest value range handled by a lookup table instead of a sort.
_MAX_LUT_RANGE = 1 << 20


@dataclass(frozen=True)
class LabelTable:
    """Raw label value -> structure index.

    Attributes:
        name: table name used in messages and in cache keys.
        codes: raw integer value -> index in ``0..7``; raw 0 -> 0 is added when absent.
    """

    name: str
    codes: Mapping[int, int]

    def __post_init__(self) -> None:
        codes = {0: 0, **{int(k): int(v) for k, v in self.codes.items()}}
        bad = {k: v for k, v in codes.items() if not 0 <= v <= NUM_STRUCTURES}
        if bad:
            raise ValueError(f"label table {self.name!r}: indices outside 0..{NUM_STRUCTURES}: {bad}")
        object.__setattr__(self, "codes", MappingProxyType(dict(sorted(codes.items()))))

    def to_json(self) -> dict[str, object]:
        """JSON-ready description (also the table's part of a cache key)."""
        return {"name": self.name, "labels": {str(k): v for k, v in self.codes.items()}}


MMWHS_TABLE = LabelTable("mmwhs", MMWHS_CODE_TO_INDEX)
IMAGECHD_TABLE = LabelTable(
    "imagechd",
    {
        1: NAME_TO_INDEX["lv"], 2: NAME_TO_INDEX["rv"], 3: NAME_TO_INDEX["la"],
        4: NAME_TO_INDEX["ra"], 5: NAME_TO_INDEX["lv_myo"], 6: NAME_TO_INDEX["aorta"],
        7: NAME_TO_INDEX["pa"], **{extra: 0 for extra in range(8, 16)},
    },
)
_LAYOUT_TABLES: Mapping[str, LabelTable] = MappingProxyType(
    {"mmwhs": MMWHS_TABLE, "imagechd": IMAGECHD_TABLE}
)


def default_table(layout: str) -> LabelTable:
    """The built-in table of a layout (``"mmwhs"`` or ``"imagechd"``)."""
    return _LAYOUT_TABLES[check_layout(layout)]


def load_label_table(path: str | os.PathLike[str]) -> LabelTable:
    """Read a JSON label table (format in the module docstring).

    Raises:
        DataError: one line naming the file on unreadable JSON or a bad entry.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read label table ({err})") from err
    if not isinstance(raw, dict) or not isinstance(raw.get("labels"), dict) or not raw["labels"]:
        raise DataError(f"{path}: label table must be an object with a non-empty 'labels' object")
    names = {**NAME_TO_INDEX, "background": 0}
    codes: dict[int, int] = {}
    for key, value in raw["labels"].items():
        try:
            code = int(key)
        except ValueError:
            raise DataError(f"{path}: label key {key!r} is not an integer") from None
        if isinstance(value, str) and value in names:
            codes[code] = names[value]
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= NUM_STRUCTURES:
            codes[code] = value
        else:
            raise DataError(f"{path}: label {key} -> {value!r} is neither an index 0..{NUM_STRUCTURES} "
                            f"nor one of {', '.join(sorted(names))}")
    return LabelTable(str(raw.get("name", path.stem)), codes)


def _as_integers(raw: np.ndarray) -> np.ndarray | None:
    """``raw`` as int64 when every value is integral and finite, else ``None``."""
    if np.issubdtype(raw.dtype, np.integer) or raw.dtype == bool:
        return raw.astype(np.int64, copy=False)
    if np.issubdtype(raw.dtype, np.floating) and np.all(np.isfinite(raw)) and np.all(raw == np.round(raw)):
        return raw.astype(np.int64)
    return None


def _lookup(raw: np.ndarray, table: LabelTable) -> tuple[np.ndarray, list[int | float]]:
    """Map values through ``table``; return ``(indices uint8 with strays as 0, stray values)``."""
    ints = _as_integers(raw)
    if ints is not None and ints.size and int(ints.max()) - int(ints.min()) < _MAX_LUT_RANGE:
        low = int(ints.min())
        shifted = ints - low
        present = np.flatnonzero(np.bincount(shifted.ravel())) + low
        lut = np.zeros(int(present[-1]) - low + 1, dtype=np.uint8)
        stray: list[int | float] = []
        for value in present.tolist():
            if value in table.codes:
                lut[value - low] = table.codes[value]
            else:
                stray.append(value)
        return lut[shifted], stray
    values, inverse = np.unique(raw, return_inverse=True)
    mapped = np.zeros(values.shape, dtype=np.uint8)
    stray = []
    for n, value in enumerate(values.tolist()):
        if isinstance(value, float) and value.is_integer() and int(value) in table.codes:
            mapped[n] = table.codes[int(value)]
        elif not isinstance(value, float) and value in table.codes:
            mapped[n] = table.codes[value]
        else:
            stray.append(value)
    return mapped[inverse.reshape(raw.shape)], stray


def _format_values(values: list[int | float], limit: int = 10) -> str:
    shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def unknown_values(raw: np.ndarray, table: LabelTable) -> list[int | float]:
    """Sorted distinct values of ``raw`` (any shape) that ``table`` does not list."""
    return _lookup(np.asarray(raw), table)[1]


def remap_labels(
    raw: np.ndarray,
    table: LabelTable,
    on_unknown: str = "error",
    source: str | os.PathLike[str] = "label volume",
) -> np.ndarray:
    """Convert raw label values to structure indices.

    Args:
        raw: label volume of any shape (e.g. ``(Z, Y, X)``), integer or float dtype.
        table: the site's :class:`LabelTable`.
        on_unknown: ``"error"`` (default): stray values raise; ``"background"``: they become 0.
        source: file name used in the error message.

    Returns:
        uint8 array of ``raw``'s shape with values in ``0..7``.

    Raises:
        DataError: with ``on_unknown="error"``, one line naming ``source`` and the stray values.
    """
    if on_unknown not in ON_UNKNOWN:
        raise ValueError(f"on_unknown must be one of {ON_UNKNOWN}, got {on_unknown!r}")
    indices, stray = _lookup(np.asarray(raw), table)
    if stray and on_unknown == "error":
        raise DataError(f"{source}: unknown label values {_format_values(stray)} (not in label table "
                        f"{table.name!r}; use on_unknown='background' to map them to background)")
    return indices


def encode_labels(indices: np.ndarray, table: LabelTable) -> np.ndarray:
    """Inverse of :func:`remap_labels` for writers: indices ``0..7`` -> the table's raw codes.

    Args:
        indices: integer array of any shape with values in ``0..7``.
        table: target table; each index is written as the smallest raw code mapping to it.

    Returns:
        int16 array of ``indices``' shape.
    """
    indices = np.asarray(indices)
    lut = np.zeros(NUM_STRUCTURES + 1, dtype=np.int16)
    for code, index in sorted(table.codes.items(), reverse=True):
        if index:
            lut[index] = code
    if indices.size and (indices.min() < 0 or indices.max() > NUM_STRUCTURES):
        raise ValueError(f"label indices must lie in 0..{NUM_STRUCTURES}")
    missing = sorted(set(range(1, NUM_STRUCTURES + 1)) - set(table.codes.values()))
    if missing and np.isin(indices, missing).any():
        raise ValueError(f"label table {table.name!r} has no code for indices {missing}")
    return lut[indices.astype(np.intp)]
