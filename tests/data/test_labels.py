"""Label tables: MM-WHS and ImageCHD remapping, stray values, JSON overrides."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedsim_tf.data.errors import DataError
from fedsim_tf.data.labels import (
    IMAGECHD_TABLE,
    MMWHS_TABLE,
    default_table,
    encode_labels,
    load_label_table,
    remap_labels,
    unknown_values,
)


def test_mmwhs_codes_map_to_anatomy_indices() -> None:
    raw = np.array([[[0, 205, 420, 500], [550, 600, 820, 850]]], dtype=np.int16)
    expected = np.array([[[0, 1, 2, 3], [4, 5, 6, 7]]], dtype=np.uint8)
    out = remap_labels(raw, MMWHS_TABLE)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    # float-stored labels (common in MM-WHS files) give the same result
    np.testing.assert_array_equal(remap_labels(raw.astype(np.float64), MMWHS_TABLE), expected)


def test_stray_value_error_names_file_and_values() -> None:
    raw = np.array([0, 205, 421, 421, 999, 500], dtype=np.int16)
    with pytest.raises(DataError, match="unknown label values 421, 999") as info:
        remap_labels(raw, MMWHS_TABLE, source="ct_train_1008_label.nii.gz")
    message = str(info.value)
    assert message.startswith("ct_train_1008_label.nii.gz: unknown label values 421, 999 ")
    assert "on_unknown='background'" in message and len(info.value.problems) == 1


def test_stray_values_to_background_option() -> None:
    raw = np.array([0, 205, 421, 999, 500, 3.5])
    np.testing.assert_array_equal(remap_labels(raw, MMWHS_TABLE, on_unknown="background"),
                                  [0, 1, 0, 0, 3, 0])
    assert unknown_values(raw, MMWHS_TABLE) == [3.5, 421.0, 999.0]
    with pytest.raises(ValueError, match="on_unknown"):
        remap_labels(raw, MMWHS_TABLE, on_unknown="ignore")


def test_imagechd_default_order_and_extra_vessels() -> None:
    # ImageCHD paper order: 1 LV, 2 RV, 3 LA, 4 RA, 5 Myo, 6 AO, 7 PA; anatomy indices:
    # lv_myo 1, la 2, lv 3, ra 4, rv 5, aorta 6, pa 7; extra vessels (8..15) -> background
    raw = np.arange(0, 10, dtype=np.uint8)
    np.testing.assert_array_equal(remap_labels(raw, IMAGECHD_TABLE), [0, 3, 5, 2, 4, 1, 6, 7, 0, 0])
    assert default_table("imagechd") is IMAGECHD_TABLE and default_table("mmwhs") is MMWHS_TABLE
    with pytest.raises(ValueError, match="layout"):
        default_table("acdc")


def test_json_override(tmp_path: Path) -> None:
    path = tmp_path / "chd.json"
    path.write_text(json.dumps({"name": "chd-alt", "labels": {
        "1": "lv_myo", "2": "la", "3": "lv", "4": "ra", "5": "rv", "6": 6, "7": "pa", "13": "background"}}))
    table = load_label_table(path)
    assert table.name == "chd-alt"
    np.testing.assert_array_equal(remap_labels(np.array([0, 1, 2, 3, 4, 5, 6, 7, 13]), table),
                                  [0, 1, 2, 3, 4, 5, 6, 7, 0])
    with pytest.raises(DataError, match="unknown label values 8"):
        remap_labels(np.array([8]), table)


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "cannot read label table"),
    ('{"labels": {}}', "non-empty 'labels'"),
    ('{"labels": {"one": "lv"}}', "not an integer"),
    ('{"labels": {"1": "heart"}}', "neither an index"),
    ('{"labels": {"1": 9}}', "neither an index"),
])
def test_bad_json_table_names_the_file(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "table.json"
    path.write_text(content)
    with pytest.raises(DataError, match=fragment) as info:
        load_label_table(path)
    assert str(info.value).startswith(str(path))


def test_encode_labels_writes_raw_codes() -> None:
    indices = np.array([[0, 1, 2, 3, 4, 5, 6, 7]])
    np.testing.assert_array_equal(encode_labels(indices, MMWHS_TABLE),
                                  [[0, 205, 420, 500, 550, 600, 820, 850]])
    np.testing.assert_array_equal(encode_labels(indices, IMAGECHD_TABLE), [[0, 5, 3, 1, 4, 2, 6, 7]])
    with pytest.raises(ValueError, match="0..7"):
        encode_labels(np.array([8]), MMWHS_TABLE)
