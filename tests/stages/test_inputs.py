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

from fedsim_tf.errors import UserInputError
from fedsim_tf.options import CommonConfig
from fedsim_tf.stages import inputs
from tests.stages.sites import BLOOD, MYOCARDIUM, write_site
from tests.test_cli import ROOT

def _common(site: Path, **changes: object) -> CommonConfig:
    base = CommonConfig(data_dirs=(str(site),), layout="mmwhs", work_dir="unused", seed=0, fold=0, label_size=0,
                        volume_size=16, fov_mm=120.0, coarse_size=8, phantom_dir="", phantom_small=True)
    return replace(base, **changes)


def _main(*args: str, pythonpath: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, (*pythonpath, ROOT)))}
    return subprocess.run([sys.executable, "-m", "fedsim_tf.main", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=600)


def test_a_too_large_label_size_is_one_line_naming_the_largest_valid_value(tmp_path, no_tensorflow) -> None:
    # 3 labelled volumes split 1 train / 1 val / 1 test; demo.cfg asks for --label_size=2.
    write_site(tmp_path / "small", 3, prefix="ct_")
    for stage in ("pretrain", "segment"):
        result = _main(f"--stage={stage}", f"--data_dir={tmp_path / 'small'}", f"--work_dir={tmp_path / 'w'}",
                       pythonpath=(no_tensorflow,))
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines() == [
            f"error: --label_size=2: site small ({tmp_path / 'small'}) has 3 labelled volumes, 1 of them for training "
            "per fold; the largest valid --label_size is 1"]
    assert not (tmp_path / "w").exists()  # nothing written


def test_a_stray_label_value_is_refused_unless_mapped_to_background(tmp_path, no_tensorflow) -> None:
    write_site(tmp_path / "stray", 5, stray_in="ct_1003", prefix="ct_")
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
    write_site(tmp_path / "chd", 5, codes={BLOOD: 7, MYOCARDIUM: 9}, stray_in="ct_1002", prefix="ct_")
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
    write_site(tmp_path / "site", 10, prefix="ct_")
    a = inputs.plan_site(str(tmp_path / "site"), _common(tmp_path / "site", seed=0, work_dir=str(tmp_path / "a")))
    b = inputs.plan_site(str(tmp_path / "site"), _common(tmp_path / "site", seed=5, work_dir=str(tmp_path / "b")))
    assert a.splits == b.splits and a.fold_ids(1) == b.fold_ids(1)
    with pytest.raises(UserInputError, match="--fold=5: site site has 5 folds; the largest valid --fold is 4"):
        a.fold_ids(5)
