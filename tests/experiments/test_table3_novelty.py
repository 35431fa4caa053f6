"""The report side of the novelty cell: its Markdown lines against hand-computed medians and fractions, the
captioned montage's layout, and the montage sheet stacking the first setting and fold's site montages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedsim_tf.experiments.table3_novelty import markdown_lines, write_montage_sheet
from fedsim_tf.synthesis.montage import CAPTION_PIXELS, GAP_PIXELS, MIN_PANEL_PIXELS, write_montage


def _output(site: str, setting: str, fold: int, nn_rms: list[float], self_rms: list[float], montage: str = "") -> dict:
    below_min = sum(d < min(self_rms) for d in nn_rms) / len(nn_rms)
    below_median = sum(d < float(np.median(self_rms)) for d in nn_rms) / len(nn_rms)
    return {"site": site, "setting": setting, "fold": fold, "nn_rms": nn_rms, "training_self_rms": self_rms,
            "fraction_below_min_self": below_min, "fraction_below_median_self": below_median, "montage": montage}


def test_markdown_line_has_hand_computed_medians_minima_and_fractions() -> None:
    # samples 30, 50, 90, 100 HU; training pairs 40, 60, 80 -> median 60; below 40: one of 4, below 60: two of 4
    lines = markdown_lines([_output("CT20", "low", 0, [90.0, 30.0, 100.0, 50.0], [60.0, 40.0, 80.0])])
    row = [line for line in lines if line.startswith("| CT20")]
    assert row == ["| CT20 | low | 0 | 4 | 70.0 (30.0) | 60.0 (40.0) | 25 % | 50 % |"]
    assert lines[0].startswith("## Novelty")


def test_captioned_montage_adds_one_strip_per_row_and_checks_the_count(tmp_path: Path) -> None:
    volume = np.zeros((8, 8, 8)), np.zeros((8, 8, 8), np.uint8)
    path = tmp_path / "m.png"
    write_montage(path, [volume, volume], ["one", "two"])
    panel = MIN_PANEL_PIXELS  # 8 voxels enlarged 16 times
    assert Image.open(path).size == (3 * (panel + GAP_PIXELS), 2 * (CAPTION_PIXELS + panel + GAP_PIXELS))
    write_montage(path, [volume, volume])
    assert Image.open(path).size == (3 * (panel + GAP_PIXELS), 2 * (panel + GAP_PIXELS))
    with pytest.raises(ValueError, match="1 captions for 2 volumes"):
        write_montage(path, [volume, volume], ["one"])


def test_sheet_stacks_the_first_setting_and_folds_montages_only(tmp_path: Path) -> None:
    paths = []
    for index, (height, width, value) in enumerate([(5, 7, 10), (3, 4, 200), (9, 9, 99)]):
        paths.append(tmp_path / f"{index}.png")
        Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(paths[-1])
    outputs = [_output("A", "low", 0, [1.0], [1.0, 2.0], str(paths[0])),
               _output("B", "low", 0, [1.0], [1.0, 2.0], str(paths[1])),
               _output("A", "low", 1, [1.0], [1.0, 2.0], str(paths[2]))]  # another fold: left out
    sheet = np.asarray(Image.open(write_montage_sheet(tmp_path / "sheet.png", outputs)))
    gap = 2 * GAP_PIXELS
    assert sheet.shape == (5 + gap + 3 + gap, 7, 3)
    assert (sheet[:5, :7] == 10).all() and (sheet[5:5 + gap] == 0).all()
    assert (sheet[5 + gap:8 + gap, :4] == 200).all() and (sheet[5 + gap:8 + gap, 4:] == 0).all()
