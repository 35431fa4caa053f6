"""On-disk cache of preprocessed cases (one ``.npz`` per case).

The key (:func:`cache_key`) is a sha256 over the *content* (sha256 of the bytes) of the case's
image and label files, the case id, the preprocessing settings, the label table, the stray-label
policy and :data:`CACHE_VERSION`: editing a file or a setting misses, renaming the folder hits.
Entries are written atomically (temporary name, then ``os.replace``); an entry that cannot be
read back (truncated, bad CRC, wrong key or shapes) is deleted and reported as a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from fedsim_tf.atomic import atomic_path
from fedsim_tf.data.case import Case
from fedsim_tf.data.labels import LabelTable
from fedsim_tf.data.layouts import CaseFiles
from fedsim_tf.data.preprocess import PreprocessConfig
from fedsim_tf.grid import Grid

CACHE_VERSION = 2  # 2: crops centred without the label (fedsim_tf.data.preprocess)
_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(files: CaseFiles, config: PreprocessConfig, table: LabelTable, on_unknown: str) -> str:
    """Hex sha256 identifying the preprocessed result of ``files`` under these settings."""
    record = {
        "version": CACHE_VERSION,
        "case_id": files.case_id,
        "image": file_digest(files.image_path),
        "label": None if files.label_path is None else file_digest(files.label_path),
        "config": config.to_json(),
        "table": table.to_json(),
        "on_unknown": on_unknown,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


class CaseCache:
    """A folder of cached :class:`~fedsim_tf.data.case.Case` entries.

    Args:
        folder: cache folder (created on first save).
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def entry_path(self, key: str) -> Path:
        """File of the entry ``key``."""
        return self.folder / f"{key}.npz"

    def load(self, key: str, files: CaseFiles) -> Case | None:
        """The cached case, with ``files``' current paths; ``None`` on a miss or corrupt entry."""
        path = self.entry_path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as entry:
                arrays = {name: entry[name] for name in entry.files}
            if str(arrays["key"]) != key or str(arrays["case_id"]) != files.case_id:
                raise ValueError("key mismatch")
            image = arrays["image"]
            labelled = "label" in arrays
            if image.dtype != np.float32 or (labelled and arrays["label"].shape != image.shape):
                raise ValueError("inconsistent arrays")
            case = Case(
                case_id=files.case_id,
                image=image,
                label=arrays["label"] if labelled else None,
                heart_mask=(arrays["label"] > 0).astype(np.uint8) if labelled else None,
                coarse=arrays["coarse"],
                grid=Grid(image.shape, arrays["affine"]),
                image_path=str(files.image_path),
                label_path=None if files.label_path is None else str(files.label_path),
            )
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)
            return None
        return case

    def save(self, key: str, case: Case) -> Path:
        """Write ``case`` as entry ``key`` atomically; returns the entry's path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        arrays = {"key": np.array(key), "case_id": np.array(case.case_id), "image": case.image,
                  "coarse": case.coarse, "affine": case.grid.affine}
        if case.label is not None:
            arrays["label"] = case.label
        with atomic_path(self.entry_path(key)) as temporary, open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
        return self.entry_path(key)
