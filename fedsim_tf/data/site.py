"""Load a whole site folder into preprocessed :class:`~fedsim_tf.data.case.Case` objects."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fedsim_tf.data.cache import CaseCache, cache_key
from fedsim_tf.data.case import Case
from fedsim_tf.data.errors import DataError
from fedsim_tf.data.labels import LabelTable, default_table
from fedsim_tf.data.layouts import find_cases
from fedsim_tf.data.preprocess import PreprocessConfig, preprocess_case
from fedsim_tf.data.validate import read_case


def print_progress(message: str) -> None:
    """Default progress sink: one line to stderr."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class Site:
    """One hospital's preprocessed data.

    Attributes:
        name: site name (e.g. ``CT20``; default the folder name), used for splits.
        folder: the site folder.
        layout: ``"mmwhs"`` or ``"imagechd"``.
        cases: case id -> :class:`Case`, in natural id order.
    """

    name: str
    folder: Path
    layout: str
    cases: dict[str, Case] = field(default_factory=dict)

    @property
    def labelled_ids(self) -> list[str]:
        """Ids of cases with a label."""
        return [c for c, case in self.cases.items() if case.labelled]

    @property
    def unlabelled_ids(self) -> list[str]:
        """Ids of cases without a label."""
        return [c for c, case in self.cases.items() if not case.labelled]


def load_site(
    folder: str | os.PathLike[str],
    layout: str = "mmwhs",
    config: PreprocessConfig | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    name: str | None = None,
    table: LabelTable | None = None,
    on_unknown: str = "error",
    progress: Callable[[str], None] | None = print_progress,
) -> Site:
    """Scan, check, preprocess (or fetch from the cache) every case of a site folder.

    Args:
        folder: site folder in ``layout`` (:mod:`fedsim_tf.data.layouts`).
        layout: ``"mmwhs"`` or ``"imagechd"``.
        config: preprocessing settings; default :class:`PreprocessConfig()`.
        cache_dir: cache folder (:mod:`fedsim_tf.data.cache`); ``None`` disables caching.
        name: site name; default the folder's name.
        table: label table; default the layout's (:func:`fedsim_tf.data.labels.default_table`).
        on_unknown: stray label values: ``"error"`` or ``"background"``.
        progress: called with one line per case (``None``: silent).

    Returns:
        The :class:`Site`.

    Raises:
        DataError: listing every problem of the folder (all cases are checked before raising).
    """
    folder = Path(folder)
    config = config or PreprocessConfig()
    table = table or default_table(layout)
    cache = None if cache_dir is None else CaseCache(cache_dir)
    site = Site(name or folder.resolve().name, folder, layout)
    files_list, problems = find_cases(folder, layout)
    for n, files in enumerate(files_list, start=1):
        started = time.perf_counter()
        key = None if cache is None else cache_key(files, config, table, on_unknown)
        case = None if cache is None else cache.load(key, files)
        source = "cache"
        if case is None:
            raw, case_problems = read_case(files, table, on_unknown)
            problems.extend(case_problems)
            if raw is None:
                continue
            case = preprocess_case(raw.image, raw.label, raw.grid, config, files.case_id,
                                   str(files.image_path),
                                   None if files.label_path is None else str(files.label_path))
            source = "preprocessed"
            if cache is not None:
                cache.save(key, case)
        site.cases[files.case_id] = case
        if progress is not None:
            progress(f"site {site.name}: {n}/{len(files_list)} {files.case_id} "
                     f"({'labelled' if case.labelled else 'unlabelled'}, {source}, "
                     f"{time.perf_counter() - started:.1f} s)")
    if problems:
        raise DataError(problems)
    return site
