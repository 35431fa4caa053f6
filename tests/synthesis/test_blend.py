"""Blends of a simulated heart into a GAN volume: the alpha blend's feathered edge, and the Poisson blend's
gradient-domain result (simulation's contrast inside, GAN's values outside)."""

import numpy as np
import pytest

from fedsim_tf.synthesis.blend import POISSON_DILATION_VOXELS, alpha_blend, blend, poisson_blend


def test_alpha_blend_takes_the_heart_from_the_simulation_with_a_symmetric_feathered_edge():
    gan = np.full((16, 8, 8), -0.5, np.float32)
    sim = np.full((16, 8, 8), 0.5, np.float32)
    mask = np.zeros((16, 8, 8), bool)
    mask[:8] = True  # a planar interface between slices 7 and 8
    out = alpha_blend(gan, sim, mask)
    np.testing.assert_allclose(out[:4], 0.5, atol=1e-6)  # deep inside: the simulation
    np.testing.assert_allclose(out[12:], -0.5, atol=1e-6)  # far outside: the GAN
    profile = out[:, 4, 4]
    assert np.all(np.diff(profile) <= 0)
    # The kernel is symmetric, so the weights of the two voxels next to the interface sum to 1.
    assert (profile[7] + 0.5) + (profile[8] + 0.5) == pytest.approx(1.0, abs=1e-6)


def test_poisson_blend_keeps_the_simulations_contrast_on_the_gans_level():
    gan = np.full((3, 40, 40), 0.2, np.float32)
    sim = np.full((3, 40, 40), -0.2, np.float32)
    sim[:, 16:24, 16:24] = 0.3  # the heart is 0.5 brighter than its surroundings in the simulation
    mask = np.zeros((3, 40, 40), bool)
    mask[:, 12:28, 12:28] = True
    mask[0] = False  # no heart on this slice
    out = poisson_blend(gan, sim, mask)
    np.testing.assert_array_equal(out[0], gan[0])
    outside = np.ones((40, 40), bool)
    outside[12 - POISSON_DILATION_VOXELS : 28 + POISSON_DILATION_VOXELS, 12 - POISSON_DILATION_VOXELS :
            28 + POISSON_DILATION_VOXELS] = False
    np.testing.assert_array_equal(out[1][outside], gan[1][outside])
    # Inside: the GAN's level (0.2) plus the simulation's contrast (0.5), within two 8-bit levels.
    np.testing.assert_allclose(out[1:, 17:23, 17:23], 0.7, atol=2 * 2 / 255)
    np.testing.assert_allclose(out[1:, 13, 13], 0.2, atol=2 * 2 / 255)  # inside the mask, off the heart


def test_unknown_blend_is_refused():
    volume = np.zeros((2, 2, 2), np.float32)
    with pytest.raises(ValueError, match="blend must be one of none, alpha, poisson"):
        blend("soft", volume, volume, volume > 0)
    np.testing.assert_array_equal(blend("none", volume + 1, volume, volume > 0), volume + 1)
