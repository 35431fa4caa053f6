"""The newcomer's path on the embedded phantom hospitals with the default preset (flags/demo.cfg): a
segmentation fold from nothing but --work_dir, and (slow) the whole chain pretrain -> pretrain_gan ->
synthesize -> segment --mode=finetune at demo size."""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOOD_CODES = (420, 500, 550, 600)  # LA, LV, RA, RV blood pools
MYOCARDIUM_CODE = 205


def _main(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "fedsim_tf.main", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=3000)


def test_segment_completes_a_fold_with_nothing_but_a_work_dir(tmp_path: Path) -> None:
    # The default preset's sizes, fewer steps (the README gives the default run's time).
    result = _main("--stage=segment", f"--work_dir={tmp_path}", "--seg_steps=4", "--val_every=2")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(next((tmp_path / "results").glob("segment_lower_CT20_L2_nnunet.json")).read_text())
    assert [fold["fold"] for fold in record["folds"]] == [0] and record["folds"][0]["steps"] == 4
    assert all(0.0 <= dice <= 1.0 for dice in record["folds"][0]["test_dice"].values())


@pytest.mark.slow
def test_demo_chain_synthesizes_blood_brighter_than_myocardium(tmp_path: Path) -> None:
    # flags/demo.cfg as it is (about 6 minutes for one site's GAN on 2 cores).
    for stage in ("pretrain", "pretrain_gan", "synthesize"):
        result = _main(f"--stage={stage}", f"--work_dir={tmp_path}", "--site=CT20")
        assert result.returncode == 0, result.stderr[-3000:]
    images = sorted(glob.glob(str(tmp_path / "synthesize" / "*" / "CT20-*" / "synth_*_image.nii.gz")))
    assert len(images) == 4
    for path in images:
        hu = np.asarray(nib.load(path).dataobj)
        labels = np.asarray(nib.load(path.replace("_image", "_label")).dataobj)
        # Every site's real volumes: contrast-enhanced blood 230-280 HU, myocardium 75-105 HU.
        assert hu[np.isin(labels, BLOOD_CODES)].mean() > hu[labels == MYOCARDIUM_CODE].mean(), path
    synthetic = str(Path(images[0]).parent).replace("/fold0_", "/fold{fold}_")
    finetune = _main("--stage=segment", f"--work_dir={tmp_path}", "--site=CT20", "--mode=finetune",
                     f"--synthetic_dir={synthetic}")
    assert finetune.returncode == 0, finetune.stderr[-3000:]
