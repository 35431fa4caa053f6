"""Sliding-window inference against per-voxel truths: exact reconstruction of pointwise models,
full coverage with the requested overlap, and the nnU-Net Gaussian weights."""

import keras
import numpy as np
import pytest

from fedsim_tf.models.sliding_window import gaussian_importance, sliding_window_logits, window_starts


@pytest.mark.parametrize("length, window", [(64, 32), (40, 16), (17, 8), (8, 8), (33, 32)])
def test_windows_cover_the_axis_with_the_overlap(length: int, window: int) -> None:
    starts = window_starts(length, window, overlap=0.5)
    assert starts[0] == 0 and starts[-1] == length - window
    assert all(b > a for a, b in zip(starts, starts[1:]))
    assert all(b - a <= window // 2 for a, b in zip(starts, starts[1:]))  # >= 50 % overlap
    covered = np.zeros(length, bool)
    for start in starts:
        covered[start:start + window] = True
    assert covered.all()


def test_window_start_counts_by_hand() -> None:
    assert window_starts(64, 32) == [0, 16, 32]
    assert window_starts(40, 16) == [0, 8, 16, 24]
    assert window_starts(32, 32, overlap=0.0) == [0]
    with pytest.raises(ValueError, match="window 40"):
        window_starts(32, 40)


def test_gaussian_importance_is_centred_and_separable() -> None:
    weights = gaussian_importance(16)
    assert weights.shape == (16, 16, 16) and weights.max() == pytest.approx(1.0, abs=1e-6)
    assert weights[7, 7, 7] == pytest.approx(weights[8, 8, 8])  # symmetric about the centre 7.5
    sigma = 2.0  # 16 / 8
    expected = np.exp(-0.5 * (7.5 / sigma) ** 2 * 3)  # corner voxel, floored at 1e-3
    assert weights[0, 0, 0] == pytest.approx(max(expected, 1e-3), rel=1e-5)
    one_axis = np.exp(-0.5 * ((np.arange(16) - 7.5) / sigma) ** 2)
    # separable Gaussian profile along an axis (the two end voxels sit below the 1e-3 floor)
    np.testing.assert_allclose(weights[1:-1, 7, 7] / weights[7, 7, 7], (one_axis / one_axis[7])[1:-1], rtol=1e-4)


def _pointwise_model(window: int) -> keras.Model:
    """logit = 3 * image - 1 per voxel (a 1x1x1 convolution with fixed weights)."""
    inputs = keras.Input((window, window, window, 1))
    conv = keras.layers.Conv3D(1, 1)
    model = keras.Model(inputs, conv(inputs))
    conv.set_weights([np.full((1, 1, 1, 1, 1), 3.0, np.float32), np.array([-1.0], np.float32)])
    return model


@pytest.mark.parametrize("shape", [(24, 24, 24), (20, 27, 16)])
def test_pointwise_model_is_reconstructed_exactly(shape: tuple[int, int, int]) -> None:
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    logits = sliding_window_logits(_pointwise_model(16), image, 16, batch_size=3)
    assert logits.shape == (*shape, 1)
    np.testing.assert_allclose(logits[..., 0], 3.0 * image - 1.0, rtol=1e-5, atol=1e-5)


def test_window_dependent_outputs_are_blended_by_importance() -> None:
    """A model whose logit is the window's mean intensity: on a volume that is 0 on the left half
    and 1 on the right, windows straddling the boundary report intermediate values, and each
    voxel gets the importance-weighted mean of the values of the windows covering it."""
    window, length = 8, 16
    inputs = keras.Input((window, window, window, 1))
    mean = keras.layers.Lambda(lambda x: keras.ops.mean(x, axis=(1, 2, 3), keepdims=True) + 0.0 * x)(inputs)
    model = keras.Model(inputs, mean)
    image = np.zeros((length,) * 3, np.float32)
    image[..., length // 2:] = 1.0
    logits = sliding_window_logits(model, image, window)[..., 0]
    starts = window_starts(length, window)
    assert starts == [0, 4, 8]
    importance = gaussian_importance(window)  # checked by hand above
    for z, y, x in [(8, 8, 0), (8, 8, 5), (8, 8, 7), (8, 8, 8), (2, 13, 11), (15, 0, 15)]:
        numerator = denominator = 0.0
        for corner in [(a, b, c) for a in starts for b in starts for c in starts]:
            local = (z - corner[0], y - corner[1], x - corner[2])
            if all(0 <= v < window for v in local):
                value = image[corner[0]:corner[0] + window, corner[1]:corner[1] + window,
                              corner[2]:corner[2] + window].mean()  # 0, 0.5 or 1
                numerator += importance[local] * value
                denominator += importance[local]
        assert logits[z, y, x] == pytest.approx(numerator / denominator, abs=1e-5), (z, y, x)
    assert logits[8, 8, 0] < 0.05 and logits[8, 8, 15] > 0.95  # far from the boundary: the pure windows dominate
