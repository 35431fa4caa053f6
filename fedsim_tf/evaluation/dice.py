"""Per-volume foreground Dice (the Table 3 metric) and its summary statistics.

Semantics follow MONAI's ``DiceMetric`` for one foreground class: both masks are binarised, the
Dice ``2|P ∩ G| / (|P| + |G|)`` is computed **per volume**, a volume whose ground truth is empty
gives NaN (and is left out of means), and the mean is taken over volumes (not pooled over the
voxels of a batch).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def binarise(volume: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Foreground mask ``volume > threshold``.

    Works for probabilities (threshold 0.5), boolean masks and label maps (any label >= 1 is
    foreground), of any shape.
    """
    return np.asarray(volume) > threshold


def dice_per_volume(prediction: np.ndarray, ground_truth: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Foreground Dice of each volume of a batch.

    Args:
        prediction: ``[B, Z, Y, X]`` (or ``[B, ...]``, any number of spatial axes) foreground
            probabilities, boolean masks or label maps; binarised with :func:`binarise`.
        ground_truth: same shape as ``prediction``; label maps (labels 1..7 are all foreground),
            masks or probabilities; binarised the same way.
        threshold: binarisation threshold of both inputs.

    Returns:
        ``[B]`` float64 Dice in [0, 1]; NaN where the ground truth of a volume is empty.

    Raises:
        ValueError: when the shapes differ or there is no batch axis.
    """
    prediction = np.asarray(prediction)
    ground_truth = np.asarray(ground_truth)
    if prediction.shape != ground_truth.shape or prediction.ndim < 2:
        raise ValueError(
            f"dice_per_volume needs equal [B, ...] shapes, got {prediction.shape} and {ground_truth.shape}"
        )
    batch = prediction.shape[0]
    pred = binarise(prediction, threshold).reshape(batch, -1)
    truth = binarise(ground_truth, threshold).reshape(batch, -1)
    intersection = np.count_nonzero(pred & truth, axis=1)
    truth_sizes = np.count_nonzero(truth, axis=1)
    sizes = np.count_nonzero(pred, axis=1) + truth_sizes
    dice = np.full(batch, np.nan)
    valid = truth_sizes > 0
    dice[valid] = 2.0 * intersection[valid] / sizes[valid]
    return dice


def dice_score(prediction: np.ndarray, ground_truth: np.ndarray, threshold: float = 0.5) -> float:
    """Foreground Dice of one ``[Z, Y, X]`` volume (NaN for an empty ground truth)."""
    return float(dice_per_volume(np.asarray(prediction)[None], np.asarray(ground_truth)[None], threshold)[0])


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0) of the non-NaN values; (NaN, NaN) if none."""
    array = np.asarray(list(values), dtype=np.float64)
    array = array[~np.isnan(array)]
    if array.size == 0:
        return float("nan"), float("nan")
    return float(array.mean()), float(array.std())


def mean_dice(values: Iterable[float]) -> float:
    """Mean over volumes of per-volume Dice values, NaN (empty ground truth) excluded."""
    return mean_std(values)[0]
