"""``train_fold(initial_weights=...)``: a fold starts from given weights (Direct-FL's fine-tuning), unless it
resumes from its own checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from fedsim_tf.models.unet3d import build_unet3d
from fedsim_tf.training import segmentation
from fedsim_tf.training.segmentation_settings import SegmentationSettings

SIZE = 16
SETTINGS = SegmentationSettings(unet="nnunet", base_filters=2, steps=1, lr=1e-9, lr_schedule="constant",
                                val_every=1, augment=False, seed=2)


def _volumes(seed: int, count: int) -> segmentation.Volumes:
    rng = np.random.default_rng(seed)
    labels = (rng.random((count, SIZE, SIZE, SIZE)) < 0.2).astype(np.uint8)
    return segmentation.Volumes(tuple(f"case_{seed}_{i}" for i in range(count)),
                                rng.standard_normal(labels.shape).astype(np.float32), labels)


def test_a_fold_starts_from_initial_weights_unless_it_resumes(tmp_path) -> None:
    # Weights whose logits are +5 everywhere: every kernel 0, the output bias 5 (normalisations of a zero
    # map give 0). One Adam step at lr 1e-9 leaves them positive, so every voxel is predicted foreground and
    # each test volume's Dice is 2 |label| / (|label| + voxels).
    model = build_unet3d("nnunet", (SIZE,) * 3, 2)
    model.set_weights([np.full(w.shape, 5.0 if w.path == "logits/bias" else 0.0, np.float32) for w in model.weights])
    path = str(tmp_path / "initial.weights.h5")
    model.save_weights(path)
    data = segmentation.FoldData(train=_volumes(1, 2), val=_volumes(2, 1), test=_volumes(3, 2))
    result = segmentation.train_fold(SETTINGS, data, 0, str(tmp_path / "fold"), str(tmp_path / "logs"),
                                     initial_weights=path)
    foreground = data.test.labels.reshape(2, -1).sum(axis=1)
    expected = 2.0 * foreground / (foreground + SIZE**3)
    assert list(result["test_dice"].values()) == pytest.approx(expected.tolist(), rel=1e-6)
    # Without them the seeded initialisation predicts something else.
    plain = segmentation.train_fold(SETTINGS, data, 0, str(tmp_path / "plain"), str(tmp_path / "logs_plain"))
    assert list(plain["test_dice"].values()) != pytest.approx(expected.tolist(), rel=1e-3)
    # A fold with a checkpoint resumes from it: the initial weights are not loaded over it.
    again = segmentation.train_fold(SETTINGS, data, 0, str(tmp_path / "plain"), str(tmp_path / "logs_plain"),
                                    initial_weights=path)
    assert again["test_dice"] == plain["test_dice"]
