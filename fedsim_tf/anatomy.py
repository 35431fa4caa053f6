"""The seven whole-heart structures and their label codes: the one table every module uses.

Label indices 1..7 follow the ascending order of the MM-WHS codes, so that index and code
tables can never disagree:

=====  ==========================  ==========  =============
index  structure                   MM-WHS code short name
=====  ==========================  ==========  =============
1      left-ventricle myocardium   205         ``lv_myo``
2      left atrium                 420         ``la``
3      left-ventricle blood pool   500         ``lv``
4      right atrium                550         ``ra``
5      right-ventricle blood pool  600         ``rv``
6      ascending aorta             820         ``aorta``
7      pulmonary artery            850         ``pa``
=====  ==========================  ==========  =============

Index 0 is background. The binary "heart" mask used for segmentation and the IoU loss is
``label > 0``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Structure:
    """One labelled structure of the whole-heart model."""

    index: int
    name: str
    mmwhs_code: int
    description: str


STRUCTURES: tuple[Structure, ...] = (
    Structure(1, "lv_myo", 205, "left-ventricle myocardium"),
    Structure(2, "la", 420, "left atrium"),
    Structure(3, "lv", 500, "left-ventricle blood pool"),
    Structure(4, "ra", 550, "right atrium"),
    Structure(5, "rv", 600, "right-ventricle blood pool"),
    Structure(6, "aorta", 820, "ascending aorta"),
    Structure(7, "pa", 850, "pulmonary artery"),
)

NUM_STRUCTURES = len(STRUCTURES)
STRUCTURE_NAMES: tuple[str, ...] = tuple(s.name for s in STRUCTURES)
MMWHS_CODE_TO_INDEX: dict[int, int] = {s.mmwhs_code: s.index for s in STRUCTURES}
INDEX_TO_MMWHS_CODE: dict[int, int] = {s.index: s.mmwhs_code for s in STRUCTURES}
NAME_TO_INDEX: dict[str, int] = {s.name: s.index for s in STRUCTURES}
