"""``segment --mode=synthetic_only`` (paper Table 2: a U-Net trained only on synthetic data): it trains on the
synthetic set alone (no real label), selects on the fold's validation volumes and tests on its test volumes;
its flag checks and the synthetic set's fold check."""

import json
import math
import os
import re

import numpy as np
import pytest
from absl.testing import flagsaver

from fedsim_tf.errors import UserInputError
from fedsim_tf.options import CommonConfig
from fedsim_tf.stages import inputs, segment
from fedsim_tf.training import segmentation
from fedsim_tf.training.segmentation_settings import SegmentationSettings
from tests.stages.sites import BLOOD_HU, write_site


def _config(tmp_path, steps: int = 3, folds: int = 1) -> segment.SegmentConfig:
    common = CommonConfig(data_dirs=(str(tmp_path / "CTX"),), layout="mmwhs", work_dir=str(tmp_path / "work"), seed=3,
                          fold=0, label_size=1, volume_size=16, coarse_size=8,
                          phantom_dir=os.path.join(tmp_path, "phantoms"), phantom_small=True, fov_mm=160.0)
    training = SegmentationSettings(unet="nnunet", batch_size=2, steps=steps, lr=1e-3, base_filters=2, val_every=1,
                                    seed=3, augment=False)
    return segment.SegmentConfig(common=common, mode="synthetic_only", folds=folds, training=training,
                                 synthetic_dir=str(tmp_path / "synth"))


def test_trains_on_the_synthetic_set_only_and_tests_on_the_fold(tmp_path, monkeypatch) -> None:
    write_site(tmp_path / "CTX", 6, myocardium_hu=BLOOD_HU)
    write_site(tmp_path / "synth", 4, seed=7, myocardium_hu=BLOOD_HU)
    config = _config(tmp_path)
    seen: list[segmentation.FoldData] = []
    original = segmentation.train_fold

    def spy(settings, data, *args, **kwargs):
        seen.append(data)
        return original(settings, data, *args, **kwargs)

    monkeypatch.setattr(segmentation, "train_fold", spy)
    record = segment.run(config)

    assert record["method"] == "Synthetic only synth"
    assert record["run_name"] == "segment_synthetic_only_CTX_L1_nnunet_synth"
    assert record["pretrain"] is None and record["label_size"] == 1
    # what the U-Net saw: the 4 synthetic volumes (not the site's 1 labelled one), the fold's val/test volumes
    [data] = seen
    synthetic = inputs.load_synthetic(str(tmp_path / "synth"), config.common).cases
    ids = [f"ct_train_{n}" for n in range(1001, 1005)]
    assert data.pretrain is None and list(data.train.ids) == ids
    np.testing.assert_array_equal(data.train.images, np.stack([synthetic[i].image for i in ids]))
    plan = inputs.pick_site(inputs.plan_sites(config.common), "")
    fold_ids = plan.fold_ids(0, 1)
    assert list(data.val.ids) == fold_ids["val"] and list(data.test.ids) == fold_ids["test"]
    fold = record["folds"][0]
    assert fold["steps"] == 3 and 1 <= fold["best_step"] <= 3
    dice = list(fold["test_dice"].values())
    assert sorted(fold["test_dice"]) == sorted(fold_ids["test"])
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in dice)
    saved = json.loads((tmp_path / "work" / "results" / f"{record['run_name']}.json").read_text())
    assert saved["config"]["mode"] == "synthetic_only" and saved["config"]["training"]["pretrain_steps"] == 0


def test_a_synthetic_set_of_another_fold_is_refused(tmp_path) -> None:
    write_site(tmp_path / "CTX", 6)
    write_site(tmp_path / "synth", 2, seed=7)
    (tmp_path / "synth" / "manifest.json").write_text(json.dumps({"fold": 1, "site": "CTX"}))
    with pytest.raises(UserInputError, match=re.escape("was synthesized for site CTX fold 1, not site CTX fold 0")):
        segment.run(_config(tmp_path))


@pytest.mark.parametrize("changes, message", [
    (dict(synthetic_dir=""), "--mode=synthetic_only needs --synthetic_dir (a folder of labelled synthetic volumes)"),
    (dict(synthetic_dir="/no/such/{fold}"), "--synthetic_dir=/no/such/{fold}: no such folder /no/such/0"),
    (dict(mode="lower"), "--synthetic_dir is only used with --mode=finetune or synthetic_only, not --mode=lower"),
])
def test_flags_are_checked(tmp_path, changes: dict, message: str) -> None:
    segment.FLAGS.mark_as_parsed()  # defaults, as after an empty command line
    settings = {"mode": "synthetic_only", "synthetic_dir": str(tmp_path), "seg_pretrain_steps": 5, "folds": 1,
                **changes}
    with flagsaver.flagsaver(**settings), pytest.raises(UserInputError, match=f"^{re.escape(message)}$"):
        segment.config_from_flags()
    with flagsaver.flagsaver(mode="synthetic_only", synthetic_dir=str(tmp_path), seg_pretrain_steps=5, seg_steps=7,
                             seg_batch_size=2):
        config = segment.config_from_flags()
    assert (config.mode, config.synthetic_dir) == ("synthetic_only", str(tmp_path))
    assert (config.training.pretrain_steps, config.training.steps, config.training.batch_size) == (0, 7, 2)
