"""The U-Net trainer of one fold: deterministic, resumable, patches that stay inside the volume."""

import os

import numpy as np
import pytest

from fedsim_tf.training import segmentation
from fedsim_tf.training.segmentation_settings import SegmentationSettings

SIZE = 16
SETTINGS = SegmentationSettings(unet="nnunet", base_filters=2, batch_size=1, steps=4, lr=1e-3, val_every=2, seed=3)


def _volumes(rng: np.random.Generator, count: int, prefix: str) -> segmentation.Volumes:
    z, y, x = np.mgrid[:SIZE, :SIZE, :SIZE]
    labels, images = [], []
    for _ in range(count):
        centre = rng.uniform(6, 10, size=3)
        ball = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= rng.uniform(9, 20)
        labels.append(ball.astype(np.uint8) * 3)
        images.append((ball * 1.2 - 0.6 + rng.normal(0, 0.2, ball.shape)).astype(np.float32))
    return segmentation.Volumes(tuple(f"{prefix}{i}" for i in range(count)), np.stack(images), np.stack(labels))


def _fold_data() -> segmentation.FoldData:
    rng = np.random.default_rng(0)
    return segmentation.FoldData(train=_volumes(rng, 2, "tr"), val=_volumes(rng, 1, "va"), test=_volumes(rng, 2, "te"))


def test_fold_is_deterministic_and_resumes_exactly(tmp_path, monkeypatch) -> None:
    data = _fold_data()
    whole = segmentation.train_fold(SETTINGS, data, 0, str(tmp_path / "a"), str(tmp_path / "logs_a"))
    draws = []
    real_draw_batch = segmentation.draw_batch

    def crash_at_step_3(*args, **kwargs):
        draws.append(1)
        if len(draws) == 3:
            raise RuntimeError("simulated crash")
        return real_draw_batch(*args, **kwargs)

    with monkeypatch.context() as patch:  # the run dies in step 3, after the checkpoint of step 2
        patch.setattr(segmentation, "draw_batch", crash_at_step_3)
        with pytest.raises(RuntimeError, match="simulated crash"):
            segmentation.train_fold(SETTINGS, data, 0, str(tmp_path / "b"), str(tmp_path / "logs_b"))
    resumed = segmentation.train_fold(SETTINGS, data, 0, str(tmp_path / "b"), str(tmp_path / "logs_b"))
    assert sorted(whole["test_dice"]) == ["te0", "te1"]
    assert all(0.0 <= v <= 1.0 for v in whole["test_dice"].values())
    assert len(set(whole["test_dice"].values())) == 2  # two different volumes, two different scores
    assert resumed["test_dice"] == whole["test_dice"]
    assert resumed["best_val_dice"] == whole["best_val_dice"] and resumed["best_step"] == whole["best_step"]
    assert os.listdir(tmp_path / "logs_a")  # TensorBoard events written


def test_patches_and_crop_stay_inside() -> None:
    rng = np.random.default_rng(1)
    data = _fold_data()
    images, labels = segmentation.draw_batch(data.train, 3, rng, None, patch_size=8)
    assert images.shape == (3, 8, 8, 8, 1) and labels.shape == (3, 8, 8, 8)
    volume, truth = data.train.images[0], data.train.labels[0]
    for _ in range(5):
        image, label = segmentation.crop_patch(volume, truth, 8, rng)
        windows = [(a, b, c) for a in range(9) for b in range(9) for c in range(9)
                   if np.array_equal(volume[a:a + 8, b:b + 8, c:c + 8], image)]
        assert len(windows) == 1  # a true sub-volume, inside the bounds
        a, b, c = windows[0]
        np.testing.assert_array_equal(truth[a:a + 8, b:b + 8, c:c + 8], label)
    with pytest.raises(ValueError, match="exceeds"):
        segmentation.crop_patch(volume, truth, 17, rng)
