"""The GAN's conditioning: trilinear upsampling against an affine function and against SciPy, and the
channel layout (ct, one-hot labels, k / K) checked value by value."""

import numpy as np
import pytest
from scipy import ndimage

from fedsim_tf.models.conditioning import CONDITION_CHANNELS, condition_slices, condition_volume, trilinear_upsample


def test_upsampling_reproduces_an_affine_function_between_the_coarse_centres():
    factor, coarse = 4, 4
    centres = np.arange(coarse) * factor + (factor - 1) / 2  # fine-index position of each block's centre
    z, y, x = np.meshgrid(centres, centres, centres, indexing="ij")
    values = (2.0 * z + 3.0 * y - x)[None].astype(np.float32)
    up = trilinear_upsample(values, (16, 16, 16)).numpy()[0]
    fine = np.arange(16, dtype=np.float64)
    zz, yy, xx = np.meshgrid(fine, fine, fine, indexing="ij")
    inside = slice(2, 14)  # fine voxels 2..13 lie between the first and last coarse centres (1.5, 13.5)
    expected = 2.0 * zz + 3.0 * yy - xx
    np.testing.assert_allclose(up[inside, inside, inside], expected[inside, inside, inside], atol=1e-4)
    # Beyond the outermost centres the value is held: fine voxel 0 reads the centre at 1.5.
    assert up[0, 5, 5] == pytest.approx(2.0 * 1.5 + 3.0 * 5 - 5, abs=1e-4)


def test_upsampling_equals_scipy_with_half_voxel_centres_and_anisotropic_sizes():
    volume = np.random.default_rng(3).normal(size=(2, 4, 4, 4)).astype(np.float32)
    up = trilinear_upsample(volume, (8, 12, 16)).numpy()
    for b in range(2):
        reference = ndimage.zoom(volume[b].astype(np.float64), (2, 3, 4), order=1, grid_mode=True, mode="nearest")
        np.testing.assert_allclose(up[b], reference, atol=1e-5)


def test_condition_channels_are_ct_one_hot_labels_and_slice_position():
    ct = np.array([[[0.5, -0.25]], [[1.0, -1.0]]], np.float32)  # [2, 1, 2]
    labels = np.array([[[0, 7]], [[3, 3]]])
    maps = condition_slices(ct, labels, np.array([1, 6]), depth=8).numpy()
    assert maps.shape == (2, 1, 2, CONDITION_CHANNELS)
    np.testing.assert_array_equal(maps[..., 0], ct)
    np.testing.assert_array_equal(maps[0, 0, 0, 1:9], [1, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(maps[0, 0, 1, 1:9], [0, 0, 0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(maps[1, 0, :, 4], [1, 1])  # label 3 -> channel 1 + 3
    np.testing.assert_allclose(maps[..., 9], [[[1 / 8, 1 / 8]], [[6 / 8, 6 / 8]]])
    whole = condition_volume(np.zeros((4, 2, 2), np.float32), np.ones((4, 2, 2), np.int32)).numpy()
    np.testing.assert_allclose(whole[:, 0, 0, 9], [0.0, 0.25, 0.5, 0.75])
