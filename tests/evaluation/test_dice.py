"""Per-volume foreground Dice against hand-counted voxels and an independent NumPy loop."""

import math

import numpy as np
import pytest

from fedsim_tf.evaluation.dice import dice_per_volume, dice_score, mean_dice, mean_std


def test_partial_overlap_hand_counted() -> None:
    prediction = np.zeros((4, 4, 4), bool)
    truth = np.zeros((4, 4, 4), np.uint8)
    prediction[0, 0, 0:3] = True  # 3 voxels
    truth[0, 0, 1:4] = 5  # 3 voxels, label 5 is foreground; overlap = voxels 1, 2
    assert dice_score(prediction, truth) == pytest.approx(2 * 2 / (3 + 3))


def test_disjoint_identical_empty_prediction() -> None:
    truth = np.zeros((3, 3, 3), np.uint8)
    truth[1, 1, :] = 1
    disjoint = np.zeros_like(truth)
    disjoint[0, 0, 0] = 1
    assert dice_score(disjoint, truth) == 0.0
    assert dice_score(truth, truth) == 1.0
    assert dice_score(np.zeros_like(truth), truth) == 0.0


def test_probabilities_are_thresholded() -> None:
    truth = np.array([[[1, 1, 0, 0]]], np.uint8)
    probabilities = np.array([[[0.9, 0.4, 0.6, 0.1]]])  # binarised: 1 0 1 0 -> overlap 1
    assert dice_score(probabilities, truth) == pytest.approx(2 * 1 / (2 + 2))


def test_empty_ground_truth_is_nan_and_excluded_from_mean() -> None:
    truth = np.zeros((2, 2, 2, 2), np.uint8)
    truth[0, 0, 0, 0] = 1
    prediction = np.zeros_like(truth)
    prediction[0, 0, 0, 0] = 1
    prediction[1, 1, 1, 1] = 1  # second volume: empty truth
    dice = dice_per_volume(prediction, truth)
    assert dice[0] == 1.0 and math.isnan(dice[1])
    assert mean_dice(dice) == 1.0
    assert all(math.isnan(v) for v in mean_std([float("nan")]))


def test_random_batch_matches_numpy_loop_and_is_not_pooled() -> None:
    rng = np.random.default_rng(3)
    prediction = rng.random((5, 6, 7, 8)) < np.linspace(0.1, 0.8, 5)[:, None, None, None]
    truth = rng.random((5, 6, 7, 8)) < 0.3
    expected = []
    for p, g in zip(prediction, truth):
        overlap = sum(1 for a, b in zip(p.ravel(), g.ravel()) if a and b)
        expected.append(2.0 * overlap / (int(p.sum()) + int(g.sum())))
    np.testing.assert_allclose(dice_per_volume(prediction, truth), expected, rtol=1e-12)
    pooled = 2.0 * np.sum(prediction & truth) / (prediction.sum() + truth.sum())
    assert mean_dice(dice_per_volume(prediction, truth)) == pytest.approx(np.mean(expected))
    assert abs(np.mean(expected) - pooled) > 1e-3  # the batch mean is a mean over volumes


def test_mean_std_population() -> None:
    assert mean_std([0.5, 0.7, float("nan"), 0.9]) == pytest.approx((0.7, math.sqrt(0.08 / 3)))


def test_shape_mismatch_rejected() -> None:
    with pytest.raises(ValueError, match="equal"):
        dice_per_volume(np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2, 3)))
