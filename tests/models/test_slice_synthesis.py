"""SliceSynthesizer: batched, padded generation equals slice-by-slice generator calls."""

import numpy as np
import pytest
import keras

from fedsim_tf.models.slice_synthesis import SliceSynthesizer
from fedsim_tf.models.spade import build_spade_generator


def test_batches_with_a_padded_tail_equal_slice_by_slice_calls():
    keras.utils.set_random_seed(4)
    generator = build_spade_generator(16, condition_channels=4, ngf=4, num_upsamplings=2, spade_hidden=8)
    generator.get_layer("to_image").kernel.assign(
        10.0 * np.random.default_rng(0).standard_normal(generator.get_layer("to_image").kernel.shape).astype(np.float32)
    )
    conditions = np.random.default_rng(1).uniform(-1, 1, (5, 16, 16, 4)).astype(np.float32)
    synthesize = SliceSynthesizer(generator, batch_size=2)
    got = synthesize(conditions)
    expected = np.concatenate([generator(conditions[k : k + 1], training=False).numpy() for k in range(5)])
    assert got.shape == (5, 16, 16, 1) and got.dtype == np.float32
    assert np.allclose(got, expected, atol=1e-5)
    assert np.std(expected) > 1e-2  # the slices differ: a wrong order would be seen
    assert np.allclose(synthesize(conditions[:3]), got[:3], atol=1e-6)


def test_rejects_maps_of_another_shape():
    generator = build_spade_generator(8, condition_channels=4, ngf=2, num_upsamplings=1, spade_hidden=4)
    with pytest.raises(ValueError, match=r"conditioning maps must be \[K, 8, 8, 4\], got \[3, 8, 8, 5\]"):
        SliceSynthesizer(generator)(np.zeros((3, 8, 8, 5), np.float32))
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        SliceSynthesizer(generator, batch_size=0)
