"""The segment stage: deterministic, resumable folds; the results JSON; upper >= lower on a phantom site."""

import json
import math
import os
from dataclasses import replace

import numpy as np
import pytest

from fedsim_tf.data.layouts import mmwhs_filenames
from fedsim_tf.data.nifti import write_nifti
from fedsim_tf.evaluation.report import RESULT_SCHEMA
from fedsim_tf.grid import Grid
from fedsim_tf.options import CommonConfig
from fedsim_tf.stages import segment

SIZE = 16


def _common(work_dir: str, data_dirs: tuple[str, ...] = (), volume_size: int = SIZE) -> CommonConfig:
    return CommonConfig(data_dirs=data_dirs, layout="mmwhs", work_dir=work_dir, seed=3, fold=0, label_size=0,
                        volume_size=volume_size, coarse_size=8, phantom_dir=os.path.join(work_dir, "phantoms"),
                        phantom_small=True, fov_mm=160.0)


def _config(common: CommonConfig, **changes: object) -> segment.SegmentConfig:
    base = segment.SegmentConfig(common=common, mode="lower", site="", folds=1, unet="nnunet", batch_size=1,
                                 steps=4, pretrain_steps=0, lr=1e-3, base_filters=2, val_every=2, augment=True)
    return replace(base, **changes)


def _volumes(rng: np.random.Generator, count: int, prefix: str) -> segment.Volumes:
    z, y, x = np.mgrid[:SIZE, :SIZE, :SIZE]
    labels, images = [], []
    for _ in range(count):
        centre = rng.uniform(6, 10, size=3)
        ball = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= rng.uniform(9, 20)
        labels.append(ball.astype(np.uint8) * 3)
        images.append((ball * 1.2 - 0.6 + rng.normal(0, 0.2, ball.shape)).astype(np.float32))
    return segment.Volumes(tuple(f"{prefix}{i}" for i in range(count)), np.stack(images), np.stack(labels))


def _fold_data() -> segment.FoldData:
    rng = np.random.default_rng(0)
    return segment.FoldData(train=_volumes(rng, 2, "tr"), val=_volumes(rng, 1, "va"), test=_volumes(rng, 2, "te"))


def test_fold_is_deterministic_and_resumes_exactly(tmp_path) -> None:
    data = _fold_data()
    config = _config(_common(str(tmp_path)))
    whole = segment.train_fold(config, data, 0, str(tmp_path / "a"), str(tmp_path / "logs_a"))
    segment.train_fold(replace(config, steps=2), data, 0, str(tmp_path / "b"), str(tmp_path / "logs_b"))
    resumed = segment.train_fold(config, data, 0, str(tmp_path / "b"), str(tmp_path / "logs_b"))
    assert sorted(whole["test_dice"]) == ["te0", "te1"]
    assert all(0.0 <= v <= 1.0 for v in whole["test_dice"].values())
    assert len(set(whole["test_dice"].values())) == 2  # two different volumes, two different scores
    assert resumed["test_dice"] == whole["test_dice"]
    assert resumed["best_val_dice"] == whole["best_val_dice"] and resumed["best_step"] == whole["best_step"]
    assert os.listdir(tmp_path / "logs_a")  # TensorBoard events written


def test_patches_and_crop_stay_inside() -> None:
    rng = np.random.default_rng(1)
    data = _fold_data()
    images, labels = segment.draw_batch(data.train, 3, rng, None, patch_size=8)
    assert images.shape == (3, 8, 8, 8, 1) and labels.shape == (3, 8, 8, 8)
    volume, truth = data.train.images[0], data.train.labels[0]
    for _ in range(5):
        image, label = segment.crop_patch(volume, truth, 8, rng)
        windows = [(a, b, c) for a in range(9) for b in range(9) for c in range(9)
                   if np.array_equal(volume[a:a + 8, b:b + 8, c:c + 8], image)]
        assert len(windows) == 1  # a true sub-volume, inside the bounds
        a, b, c = windows[0]
        np.testing.assert_array_equal(truth[a:a + 8, b:b + 8, c:c + 8], label)
    with pytest.raises(ValueError, match="exceeds"):
        segment.crop_patch(volume, truth, 17, rng)


def _write_site(folder, count: int) -> None:
    rng = np.random.default_rng(5)
    grid = Grid.centred(24, 120.0)
    z, y, x = np.mgrid[:24, :24, :24]
    for number in range(1001, 1001 + count):
        centre = rng.uniform(10, 14, size=3)
        heart = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= 36
        image = np.where(heart, 350.0, -100.0) + rng.normal(0, 30, heart.shape)
        image_name, label_name = mmwhs_filenames(number)
        write_nifti(folder / image_name, image.astype(np.int16), grid)
        write_nifti(folder / label_name, (heart * 500).astype(np.int16), grid)  # 500: LV blood pool


def test_run_writes_results_schema_and_skips_finished_folds(tmp_path) -> None:
    site = tmp_path / "CTX"
    site.mkdir()
    _write_site(site, 6)
    common = _common(str(tmp_path / "work"), data_dirs=(str(site),))
    config = _config(common, steps=2, val_every=1, mode="upper")
    record = segment.run(config)
    path = tmp_path / "work" / "results" / f"segment_upper_CTX_L{record['label_size']}_nnunet.json"
    data = json.loads(path.read_text())
    assert data["schema"] == RESULT_SCHEMA and data["method"] == "Upper Bound" and data["site"] == "CTX"
    assert data["seed"] == 3 and data["config"]["steps"] == 2
    assert set(data["versions"]) == {"python", "numpy", "tensorflow", "keras"}
    fold = data["folds"][0]
    assert fold["fold"] == 0 and len(fold["test_dice"]) >= 1
    values = [v for v in fold["test_dice"].values() if v is not None]
    assert data["mean"] == pytest.approx(np.mean(values)) and data["std"] == pytest.approx(np.std(values))
    table = (tmp_path / "work" / "results" / "table3.md").read_text()
    assert "| Upper Bound |" in table and f"CTX L={record['label_size']}" in table
    fold_result = tmp_path / "work" / "segment" / "upper" / "fold0" / "result.json"
    fold_result.write_text(fold_result.read_text().replace('"steps": 2', '"steps": 99'))
    again = segment.run(config)  # the finished fold is read back, not retrained
    assert again["folds"][0]["steps"] == 99


@pytest.mark.slow
def test_upper_scores_at_least_lower_on_a_phantom_site(tmp_path) -> None:
    common = _common(str(tmp_path / "work"), volume_size=64)
    common = replace(common, coarse_size=16, phantom_dir=os.environ.get("FEDSIM_PHANTOM_DIR", common.phantom_dir))
    settings = dict(folds=1, unet="nnunet", base_filters=8, steps=150, val_every=50, patch_size=32, lr=3e-3)
    lower = segment.run(_config(common, mode="lower", **settings))
    upper = segment.run(_config(common, mode="upper", **settings))
    assert not math.isnan(lower["mean"])
    assert upper["mean"] >= lower["mean"] - 0.01, (upper["mean"], lower["mean"])
