"""What users' folders meet first: the label size is checked against the site before anything loads,
stray label values are refused or mapped to background on request, a site's own label table is used,
and one split per site serves every run."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fedsim_tf.data.layouts import case_filenames
from fedsim_tf.data.nifti import write_nifti
from fedsim_tf.errors import UserInputError
from fedsim_tf.grid import Grid
from fedsim_tf.options import CommonConfig
from fedsim_tf.stages import inputs
from tests.test_cli import ROOT

BLOOD, MYOCARDIUM = 3, 1  # structure indices of the LV blood pool and the LV myocardium


def _write_site(folder: Path, codes: dict[int, int], count: int, stray_in: str = "") -> None:
    """``count`` labelled cases ``ct_100N`` on a 24^3 grid of 5 mm voxels: a blood ball in a myocardium
    shell, written with the raw label ``codes`` (structure index -> raw value); case ``stray_in`` also
    carries a few voxels of the off-table value 421."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(folder.name))
    z, y, x = np.mgrid[:24, :24, :24]
    for number in range(1001, 1001 + count):
        centre = rng.uniform(10, 14, size=3)
        radius2 = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2
        label = np.where(radius2 <= 16, codes[BLOOD], np.where(radius2 <= 36, codes[MYOCARDIUM], 0)).astype(np.int16)
        image = np.where(label > 0, 350.0, -100.0) + rng.normal(0, 30, label.shape)
        if f"ct_{number}" == stray_in:
            label[0, 0, :4] = 421
        image_name, label_name = case_filenames(f"ct_{number}")
        write_nifti(folder / image_name, image.astype(np.int16), Grid.centred(24, 120.0))
        write_nifti(folder / label_name, label, Grid.centred(24, 120.0))


def _common(site: Path, **changes: object) -> CommonConfig:
    base = CommonConfig(data_dirs=(str(site),), layout="mmwhs", work_dir="unused", seed=0, fold=0, label_size=0,
                        volume_size=16, fov_mm=120.0, coarse_size=8, phantom_dir="", phantom_small=True)
    return replace(base, **changes)


def _main(*args: str, pythonpath: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, (*pythonpath, ROOT)))}
    return subprocess.run([sys.executable, "-m", "fedsim_tf.main", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=600)


MMWHS = {BLOOD: 500, MYOCARDIUM: 205}


def test_a_too_large_label_size_is_one_line_naming_the_largest_valid_value(tmp_path, no_tensorflow) -> None:
    # 3 labelled volumes split 1 train / 1 val / 1 test; demo.cfg asks for --label_size=2.
    _write_site(tmp_path / "small", MMWHS, 3)
    for stage in ("pretrain", "segment"):
        result = _main(f"--stage={stage}", f"--data_dir={tmp_path / 'small'}", f"--work_dir={tmp_path / 'w'}",
                       pythonpath=(no_tensorflow,))
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines() == [
            f"error: --label_size=2: site small ({tmp_path / 'small'}) has 3 labelled volumes, 1 of them for training "
            "per fold; the largest valid --label_size is 1"]
    assert not (tmp_path / "w").exists()  # nothing written


def test_a_stray_label_value_is_refused_unless_mapped_to_background(tmp_path, no_tensorflow) -> None:
    _write_site(tmp_path / "stray", MMWHS, 5, stray_in="ct_1003")
    refused = _main("--stage=segment", f"--data_dir={tmp_path / 'stray'}", f"--work_dir={tmp_path / 'w'}",
                    "--volume_size=16", "--coarse_size=8", pythonpath=(no_tensorflow,))
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (
        f"error: {tmp_path / 'stray' / 'ct_1003_label.nii.gz'}: unknown label values 421 (not in label table "
        "'mmwhs'; use on_unknown='background' to map them to background)")
    common = _common(tmp_path / "stray", on_unknown="background")
    site = inputs.load_plan(inputs.plan_site(str(tmp_path / "stray"), common), common)
    case = site.cases["ct_1003"]
    assert set(np.unique(case.label)) == {0, MYOCARDIUM, BLOOD}  # 421 became background


def test_a_sites_own_label_table_and_on_unknown_reach_the_loader_from_the_command_line(tmp_path) -> None:
    # ImageCHD-style values of another convention: 7 = LV blood pool, 9 = LV myocardium; 421 is stray.
    _write_site(tmp_path / "chd", {BLOOD: 7, MYOCARDIUM: 9}, 5, stray_in="ct_1002")
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"name": "mine", "labels": {"7": "lv", "9": "lv_myo"}}))
    result = _main("--stage=segment", f"--data_dir={tmp_path / 'chd'}", "--layout=imagechd",
                   f"--label_table={table}", "--on_unknown=background", f"--work_dir={tmp_path / 'w'}",
                   "--label_size=1", "--volume_size=16", "--coarse_size=8", "--fov_mm=120", "--seg_patch_size=0",
                   "--seg_base_filters=2", "--seg_steps=2", "--val_every=2")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "w" / "results" / "segment_lower_chd_L1_nnunet.json").read_text())
    assert record["site"] == "chd" and len(record["folds"][0]["test_dice"]) == 1
    common = _common(tmp_path / "chd", layout="imagechd", label_table=str(table), on_unknown="background")
    case = inputs.load_plan(inputs.plan_site(str(tmp_path / "chd"), common), common).cases["ct_1001"]
    assert set(np.unique(case.label)) == {0, MYOCARDIUM, BLOOD}


def test_one_split_per_site_whatever_the_seed_or_work_dir(tmp_path) -> None:
    _write_site(tmp_path / "site", MMWHS, 10)
    a = inputs.plan_site(str(tmp_path / "site"), _common(tmp_path / "site", seed=0, work_dir=str(tmp_path / "a")))
    b = inputs.plan_site(str(tmp_path / "site"), _common(tmp_path / "site", seed=5, work_dir=str(tmp_path / "b")))
    assert a.splits == b.splits and a.fold_ids(1) == b.fold_ids(1)
    with pytest.raises(UserInputError, match="--fold=5: site site has 5 folds; the largest valid --fold is 4"):
        a.fold_ids(5)
