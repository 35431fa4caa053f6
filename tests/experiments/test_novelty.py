"""Nearest-neighbour novelty (paper Fig. 3) against hand-computed distances: constant volumes (distance
|c1 - c2| * sqrt(voxels)), Pythagorean voxel differences, exact copies, leave-one-out self distances."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fedsim_tf.experiments.novelty import nearest_neighbours, novelty_summary, training_self_distances

GRID = (2, 3, 4)
VOXELS = 24


def _constant(values: list[float], dtype: type = np.float32) -> np.ndarray:
    return np.stack([np.full(GRID, v) for v in values]).astype(dtype)


TRAINING = _constant([0.0, 1.0, 3.0, 10.0])  # self NN distances 1, 1, 2, 7 (x sqrt 24)
SYNTHETIC = _constant([2.5, 3.0, 11.0, -5.0])  # NN 3 (0.5), 3 (0), 10 (1), 0 (5)


def test_constant_volumes_nearest_neighbour_is_intensity_gap_times_sqrt_voxels() -> None:
    index, distance = nearest_neighbours(SYNTHETIC, TRAINING)
    assert index.tolist() == [2, 2, 3, 0]
    np.testing.assert_allclose(distance, np.array([0.5, 0.0, 1.0, 5.0]) * math.sqrt(VOXELS), rtol=1e-12)


def test_pythagorean_voxel_differences() -> None:
    training = np.zeros((2,) + GRID)
    training[1, 0, 0, 0], training[1, 1, 2, 3] = 3.0, 4.0  # training 0 <-> 1: 5
    synthetic = np.zeros((1,) + GRID)
    synthetic[0, 0, 1, 1] = 12.0  # to training 0: 12; to training 1: sqrt(9 + 16 + 144) = 13
    index, distance = nearest_neighbours(synthetic, training)
    assert index.tolist() == [0] and distance[0] == pytest.approx(12.0, rel=1e-12)
    np.testing.assert_allclose(training_self_distances(training), [5.0, 5.0], rtol=1e-12)


def test_integer_hu_volumes_do_not_overflow() -> None:
    training = _constant([-1000.0, 3000.0], np.int16)  # difference 4000 overflows int16 arithmetic
    index, distance = nearest_neighbours(_constant([3000.0], np.int16), training)
    assert index.tolist() == [1] and distance[0] == 0.0
    np.testing.assert_allclose(training_self_distances(training), [4000 * math.sqrt(VOXELS)] * 2, rtol=1e-12)


def test_copy_of_a_training_volume_has_distance_zero_and_is_flagged() -> None:
    training = np.random.default_rng(0).uniform(-1.0, 1.0, (5,) + GRID).astype(np.float32)
    synthetic = np.stack([training[3], training[1] + 0.5])  # a copy; 0.5 off everywhere
    summary = novelty_summary(synthetic, training)
    assert summary.nn_index[0] == 3 and summary.nn_distance[0] == 0.0
    assert summary.below_min_self[0] is True
    # the shifted sample is 0.5 * sqrt(24) ~ 2.45 from training 1, random pairs are ~ sqrt(24 * 2/3) ~ 4
    reference = np.sqrt(((synthetic[1].astype(np.float64) - training.astype(np.float64)) ** 2).sum(axis=(1, 2, 3)))
    assert summary.nn_index[1] == int(np.argmin(reference))
    assert summary.nn_distance[1] == pytest.approx(reference.min(), rel=1e-12)


def test_leave_one_out_excludes_the_volume_itself_but_not_its_duplicate() -> None:
    np.testing.assert_allclose(training_self_distances(TRAINING), np.array([1.0, 1.0, 2.0, 7.0]) * math.sqrt(VOXELS),
                               rtol=1e-12)
    duplicated = _constant([4.0, 4.0, 6.0])
    np.testing.assert_allclose(training_self_distances(duplicated), [0.0, 0.0, 2 * math.sqrt(VOXELS)], rtol=1e-12)


def test_tiny_blocks_match_one_block() -> None:
    rng = np.random.default_rng(1)
    training, synthetic = rng.normal(size=(4,) + GRID), rng.normal(size=(3,) + GRID)
    reference = np.sqrt(((synthetic[:, None] - training[None]) ** 2).sum(axis=(2, 3, 4)))
    for block_bytes in (1, 8 * 3 * 4 * 5, 2**30):  # one voxel per block, 5 voxels per block, everything
        index, distance = nearest_neighbours(synthetic, training, block_bytes=block_bytes)
        assert index.tolist() == reference.argmin(axis=1).tolist()
        np.testing.assert_allclose(distance, reference.min(axis=1), rtol=1e-12)


def test_tie_goes_to_the_lowest_index() -> None:
    index, distance = nearest_neighbours(_constant([2.0]), _constant([5.0, 1.0, 3.0]))
    assert index.tolist() == [1] and distance[0] == pytest.approx(math.sqrt(VOXELS), rel=1e-12)


def test_summary_fractions_and_json() -> None:
    summary = novelty_summary(SYNTHETIC, TRAINING)
    root = math.sqrt(VOXELS)
    # NN distances 0.5, 0, 1, 5 (x root); min self 1, median self 1.5 (x root); "below" is strict
    assert summary.below_min_self == (True, True, False, False)
    assert summary.fraction_below_min_self == 0.5
    assert summary.fraction_below_median_self == 0.75
    assert summary.voxels == VOXELS
    loaded = json.loads(json.dumps(summary.to_json()))
    assert loaded["nn_index"] == [2, 2, 3, 0]
    np.testing.assert_allclose(loaded["nn_rms"], [0.5, 0.0, 1.0, 5.0], rtol=1e-12)
    np.testing.assert_allclose(loaded["nn_distance"], np.array([0.5, 0.0, 1.0, 5.0]) * root, rtol=1e-12)
    np.testing.assert_allclose(loaded["training_self_rms"], [1.0, 1.0, 2.0, 7.0], rtol=1e-12)


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match=r"must share one \[Z, Y, X\] grid"):
        nearest_neighbours(np.zeros((1, 2, 3, 5)), TRAINING)
    with pytest.raises(ValueError, match=r"synthetic must be volumes \[count >= 1, Z, Y, X\], got shape \(2, 3, 4\)"):
        nearest_neighbours(np.zeros(GRID), TRAINING)
    with pytest.raises(ValueError, match=r"training must be volumes .* got shape \(0, 2, 3, 4\)"):
        nearest_neighbours(SYNTHETIC, np.zeros((0,) + GRID))
    with pytest.raises(ValueError, match="at least 2 volumes for leave-one-out"):
        training_self_distances(TRAINING[:1])
    with pytest.raises(ValueError, match="at least 2 volumes for leave-one-out"):
        novelty_summary(SYNTHETIC, TRAINING[:1])
    with pytest.raises(ValueError, match="must hold real numbers"):
        nearest_neighbours(SYNTHETIC.astype(np.complex64), TRAINING)
    corrupt = SYNTHETIC.copy()
    corrupt[1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        nearest_neighbours(corrupt, TRAINING)
