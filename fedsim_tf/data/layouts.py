"""Site folder layouts: which files form a case, and the names a writer should use.

Both supported layouts pair files by name inside one flat folder:

* ``"mmwhs"`` (MM-WHS CT): ``ct_train_1001_image.nii.gz`` + ``ct_train_1001_label.nii.gz``
  (case id ``ct_train_1001``); the unlabelled challenge volumes ``ct_test_2001_image.nii.gz``
  have no label partner.
* ``"imagechd"`` (ImageCHD): ``ct_1001_image.nii.gz`` + ``ct_1001_label.nii.gz`` (case id
  ``ct_1001``).

The scanner accepts any ``<case_id>_image.nii[.gz]`` / ``<case_id>_label.nii[.gz]`` in either
layout (users rename files); the layout selects the label table (:mod:`fedsim_tf.data.labels`)
and the names :func:`case_filenames` produces. An image without a label is a first-class
*unlabelled* case. A label without an image, two files for the same role (``.nii`` and
``.nii.gz``) and NIfTI files that match neither pattern are problems. Hidden files (leading
``.``, e.g. the temporary names of atomic writes) and non-NIfTI files are ignored.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from fedsim_tf.data.errors import DataError
from fedsim_tf.data.nifti import NIFTI_SUFFIXES

LAYOUTS: tuple[str, ...] = ("mmwhs", "imagechd")

_CASE_FILE = re.compile(r"^(?P<case>.+)_(?P<role>image|label)\.nii(?:\.gz)?$")


@dataclass(frozen=True)
class CaseFiles:
    """The files of one case.

    Attributes:
        case_id: file-name stem shared by image and label (e.g. ``ct_train_1001``).
        image_path: the image volume (HU).
        label_path: the label volume, or ``None`` for an unlabelled case.
    """

    case_id: str
    image_path: Path
    label_path: Path | None

    @property
    def labelled(self) -> bool:
        """True when the case has a label file."""
        return self.label_path is not None


def check_layout(layout: str) -> str:
    """Return ``layout`` when supported, else raise ``ValueError`` listing the supported ones."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    return layout


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders embedded numbers numerically (``ct_2`` before ``ct_10``)."""
    return tuple((0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", text) if t)


def case_filenames(case_id: str) -> tuple[str, str]:
    """``(image_name, label_name)`` of a case id, compressed NIfTI."""
    return f"{case_id}_image.nii.gz", f"{case_id}_label.nii.gz"


def mmwhs_case_id(case_number: int, split: str = "train") -> str:
    """MM-WHS CT case id, e.g. ``mmwhs_case_id(1001) == "ct_train_1001"``."""
    if split not in ("train", "test"):
        raise ValueError(f"MM-WHS split must be 'train' or 'test', got {split!r}")
    return f"ct_{split}_{int(case_number)}"


def imagechd_case_id(case_number: int) -> str:
    """ImageCHD case id, e.g. ``imagechd_case_id(1001) == "ct_1001"``."""
    return f"ct_{int(case_number)}"


def mmwhs_filenames(case_number: int, split: str = "train") -> tuple[str, str]:
    """``("ct_train_1001_image.nii.gz", "ct_train_1001_label.nii.gz")`` for case 1001."""
    return case_filenames(mmwhs_case_id(case_number, split))


def imagechd_filenames(case_number: int) -> tuple[str, str]:
    """``("ct_1001_image.nii.gz", "ct_1001_label.nii.gz")`` for case 1001."""
    return case_filenames(imagechd_case_id(case_number))


def layout_filenames(layout: str, case_number: int) -> tuple[str, str]:
    """File names of labelled case ``case_number`` in ``layout`` (MM-WHS: the train series)."""
    if check_layout(layout) == "mmwhs":
        return mmwhs_filenames(case_number)
    return imagechd_filenames(case_number)


def find_cases(folder: str | os.PathLike[str], layout: str) -> tuple[list[CaseFiles], list[str]]:
    """Pair the files of a site folder, collecting problems instead of raising.

    Args:
        folder: the site folder (flat; sub-folders are ignored).
        layout: one of :data:`LAYOUTS`.

    Returns:
        ``(cases, problems)``: cases sorted by :func:`natural_key` of their id (labelled and
        unlabelled), and one line per problem, each naming the file or folder.
    """
    check_layout(layout)
    folder = Path(folder)
    if not folder.exists():
        return [], [f"{folder}: folder does not exist"]
    if not folder.is_dir():
        return [], [f"{folder}: not a folder"]
    problems: list[str] = []
    roles: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if path.name.startswith(".") or not path.is_file() or not path.name.endswith(NIFTI_SUFFIXES):
            continue
        match = _CASE_FILE.match(path.name)
        if match is None:
            problems.append(
                f"{path}: NIfTI file name matches neither <case>_image.nii.gz nor <case>_label.nii.gz"
            )
            continue
        slot = roles.setdefault(match["case"], {})
        if match["role"] in slot:
            problems.append(f"{path}: duplicate {match['role']} file for case {match['case']} "
                            f"(also {slot[match['role']].name})")
            continue
        slot[match["role"]] = path
    cases: list[CaseFiles] = []
    for case_id in sorted(roles, key=natural_key):
        slot = roles[case_id]
        if "image" not in slot:
            problems.append(f"{slot['label']}: label file without an image file "
                            f"(expected {case_filenames(case_id)[0]})")
            continue
        cases.append(CaseFiles(case_id, slot["image"], slot.get("label")))
    if not cases and not problems:
        problems.append(f"{folder}: no <case>_image.nii.gz files found (empty site folder)")
    return cases, problems


def scan_site(folder: str | os.PathLike[str], layout: str = "mmwhs") -> list[CaseFiles]:
    """The cases of a site folder (see the module docstring for the naming rules).

    Args:
        folder: the site folder.
        layout: ``"mmwhs"`` or ``"imagechd"``.

    Returns:
        Cases sorted naturally by id; unlabelled cases have ``label_path=None``.

    Raises:
        DataError: listing every naming problem of the folder (missing/empty folder, label
            without image, duplicates, unrecognised NIfTI names).
    """
    cases, problems = find_cases(folder, layout)
    if problems:
        raise DataError(problems)
    return cases
