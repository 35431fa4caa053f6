"""Sliding-window inference: run a model trained on cubic patches over a whole volume.

A U-Net trained on ``P``\\ :sup:`3` patches sees whole-volume statistics it never met in training
when it is applied to a larger volume in one piece (instance normalisation, in particular,
normalises over the whole input). nnU-Net therefore predicts patch by patch: windows of the
training patch size with 50 % overlap, each window's logits weighted by a Gaussian importance
map (standard deviation ``P / 8``, peak 1) that trusts the window's centre more than its border,
and the weighted sum divided by the summed weights.
"""

from __future__ import annotations

import itertools

import keras
import numpy as np

GAUSSIAN_SIGMA_FRACTION = 1.0 / 8.0
MIN_IMPORTANCE = 1e-3


def window_starts(length: int, window: int, overlap: float = 0.5) -> list[int]:
    """Start indices of windows of ``window`` voxels covering ``0..length-1`` with at least
    ``overlap`` (fraction of ``window``) between neighbours; the last window ends at ``length``.

    Raises:
        ValueError: ``window`` larger than ``length`` or not positive, ``overlap`` outside ``[0, 1)``.
    """
    if not 0 < window <= length:
        raise ValueError(f"window {window} must be in 1..{length} (the volume's edge)")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    stride = max(1, int(window * (1.0 - overlap)))
    count = int(np.ceil((length - window) / stride)) + 1
    if count == 1:
        return [0]
    # evenly spread between 0 and length - window (the spacing never exceeds ``stride``)
    return [int(round(i * (length - window) / (count - 1))) for i in range(count)]


def gaussian_importance(window: int) -> np.ndarray:
    """``[window, window, window]`` float32 weights: a Gaussian of standard deviation
    ``window / 8`` centred in the window, scaled to peak 1 and floored at :data:`MIN_IMPORTANCE`."""
    centre = (window - 1) / 2.0
    sigma = window * GAUSSIAN_SIGMA_FRACTION
    profile = np.exp(-0.5 * ((np.arange(window) - centre) / sigma) ** 2)
    weights = profile[:, None, None] * profile[None, :, None] * profile[None, None, :]
    return np.maximum(weights / weights.max(), MIN_IMPORTANCE).astype(np.float32)


def sliding_window_logits(
    model: keras.Model, image: np.ndarray, window: int, overlap: float = 0.5, batch_size: int = 4
) -> np.ndarray:
    """Whole-volume logits of a patch-trained model (inference mode).

    Args:
        model: maps ``[B, window, window, window, 1]`` float32 images to ``[B, window, window, window, C]``
            logits.
        image: ``[Z, Y, X]`` float32 volume (each axis at least ``window``).
        window: the cubic window edge in voxels (the training patch size).
        overlap: fraction of ``window`` shared by neighbouring windows along each axis.
        batch_size: windows per model call.

    Returns:
        ``[Z, Y, X, C]`` float32 logits: the importance-weighted mean over the windows covering each voxel.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be [Z, Y, X], got shape {image.shape}")
    starts = list(itertools.product(*(window_starts(n, window, overlap) for n in image.shape)))
    importance = gaussian_importance(window)[..., None]
    total: np.ndarray | None = None
    weight = np.zeros((*image.shape, 1), np.float32)
    for first in range(0, len(starts), batch_size):
        corners = starts[first:first + batch_size]
        windows = [tuple(slice(c, c + window) for c in corner) for corner in corners]
        batch = np.stack([image[w] for w in windows])[..., None].astype(np.float32)
        logits = np.asarray(model(batch, training=False))
        if total is None:
            total = np.zeros((*image.shape, logits.shape[-1]), np.float32)
        for w, values in zip(windows, logits):
            total[w] += values * importance
            weight[w] += importance
    assert total is not None  # at least one window
    return total / weight
