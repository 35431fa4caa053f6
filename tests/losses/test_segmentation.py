"""Soft Dice and cross-entropy against hand-computed values."""

import math

import numpy as np
import pytest
import tensorflow as tf

from fedsim_tf.losses.segmentation import SMOOTH, cross_entropy_loss, dice_ce_loss, soft_dice_loss


def test_binary_soft_dice_and_bce_hand_values() -> None:
    labels = np.array([[[[1, 0]]]], np.uint8)  # [B=1, 1, 1, 2]
    logits = np.zeros((1, 1, 1, 2, 1), np.float32)  # p = 0.5 everywhere
    # soft Dice = (2 * 0.5 + eps) / (1.0 + 1 + eps)
    assert float(soft_dice_loss(labels, logits)) == pytest.approx(1 - (1 + SMOOTH) / (2 + SMOOTH), abs=1e-6)
    assert float(cross_entropy_loss(labels, logits)) == pytest.approx(math.log(2), abs=1e-6)
    assert float(dice_ce_loss(labels, logits)) == pytest.approx(0.5 + math.log(2), abs=1e-5)


def test_confident_correct_prediction_has_near_zero_loss() -> None:
    labels = np.array([[[[3, 0, 0, 7]]]], np.uint8)  # any label > 0 is foreground for 1 channel
    logits = np.where(labels > 0, 20.0, -20.0).astype(np.float32)[..., None]
    assert float(dice_ce_loss(labels, logits)) < 1e-5


def test_multiclass_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 2, 2, 3, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=(2, 2, 2, 3))
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    onehot = np.eye(4)[labels]
    ce = -np.mean(np.log(np.take_along_axis(p, labels[..., None], -1)))
    pf, gf = p[..., 1:].reshape(2, -1, 3), onehot[..., 1:].reshape(2, -1, 3)
    dice = (2 * (pf * gf).sum(1) + SMOOTH) / (pf.sum(1) + gf.sum(1) + SMOOTH)
    assert float(cross_entropy_loss(labels, logits)) == pytest.approx(ce, rel=1e-5)
    assert float(soft_dice_loss(labels, tf.constant(logits))) == pytest.approx(1 - dice.mean(), rel=1e-5)
