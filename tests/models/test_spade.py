"""SPADE layer, residual block and generator against NumPy references, hand-computed indices and GauGAN's plan."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from fedsim_tf.models.spade import (
    SPADE,
    SPADEResBlock,
    build_spade_generator,
    generator_widths,
    leaky_relu,
    nearest_downsample,
)


def _instance_norm_reference(x: np.ndarray, epsilon: float = 1e-5) -> np.ndarray:
    x = x.astype(np.float64)
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon)


def _features(shape: tuple, seed: int) -> np.ndarray:
    """Random features with a different mean and scale per sample and channel."""
    rng = np.random.default_rng(seed)
    offsets = rng.uniform(-3, 3, (shape[0], 1, 1, shape[3]))
    scales = rng.uniform(0.5, 4, (shape[0], 1, 1, shape[3]))
    return (offsets + scales * rng.standard_normal(shape)).astype(np.float32)


def test_spade_with_zero_gamma_and_beta_is_instance_normalisation():
    x = _features((2, 6, 8, 5), 0)
    condition = np.random.default_rng(1).uniform(-1, 1, (2, 12, 16, 3)).astype(np.float32)
    spade = SPADE(hidden=4)
    spade([x, condition])
    for head in (spade.gamma, spade.beta):
        head.kernel.assign(np.zeros(head.kernel.shape, np.float32))
        head.bias.assign(np.zeros(head.bias.shape, np.float32))
    got = spade([x, condition]).numpy()
    assert np.allclose(got, _instance_norm_reference(x), atol=2e-5)


def test_spade_modulation_matches_a_numpy_reference():
    """1x1 convolutions make the reference a few matrix products: out = IN(x) * (1 + gamma) + beta."""
    rng = np.random.default_rng(2)
    x = _features((2, 2, 3, 4), 3)
    condition = rng.uniform(-1, 1, (2, 6, 6, 3)).astype(np.float32)  # factors 3 and 2
    spade = SPADE(hidden=5, kernel_size=1)
    spade([x, condition])
    weights = {}
    for layer in (spade.shared, spade.gamma, spade.beta):
        kernel = rng.normal(0, 0.7, layer.kernel.shape).astype(np.float32)
        bias = rng.normal(0, 0.3, layer.bias.shape).astype(np.float32)
        layer.kernel.assign(kernel)
        layer.bias.assign(bias)
        weights[layer.name] = (kernel[0, 0].astype(np.float64), bias.astype(np.float64))
    # Nearest resize by factors (3, 2): rows 1, 4 and columns 1, 3, 5 (the centre-most input pixel).
    small = condition[:, [1, 4]][:, :, [1, 3, 5]].astype(np.float64)
    hidden = np.maximum(small @ weights["shared"][0] + weights["shared"][1], 0.0)
    gamma = hidden @ weights["gamma"][0] + weights["gamma"][1]
    beta = hidden @ weights["beta"][0] + weights["beta"][1]
    expected = _instance_norm_reference(x) * (1.0 + gamma) + beta
    assert np.allclose(spade([x, condition]).numpy(), expected, atol=1e-4)


def test_nearest_downsample_picks_hand_computed_pixels():
    condition = np.arange(2 * 6 * 4 * 1, dtype=np.float32).reshape(2, 6, 4, 1)
    got = nearest_downsample(tf.constant(condition), (2, 2)).numpy()
    assert np.array_equal(got, condition[:, [1, 4]][:, :, [1, 3]])
    assert np.array_equal(nearest_downsample(tf.constant(condition), (6, 4)).numpy(), condition)
    with pytest.raises(ValueError, match="cannot be resized by an integer factor to 4x4"):
        nearest_downsample(tf.constant(condition), (4, 4))


def test_leaky_relu_values_and_gradient():
    x = tf.constant([-2.0, -0.5, 0.25, 3.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = leaky_relu(x)
        loss = tf.reduce_sum(y * tf.constant([1.0, 2.0, 3.0, 4.0]))
    assert np.allclose(y.numpy(), [-0.4, -0.1, 0.25, 3.0], atol=1e-7)
    assert np.allclose(tape.gradient(loss, x).numpy(), [0.2, 0.4, 3.0, 4.0], atol=1e-7)


def _kernel_with_singular_values(shape: tuple, values: list[float], seed: int) -> np.ndarray:
    rows, cols = int(np.prod(shape[:-1])), shape[-1]
    rng = np.random.default_rng(seed)
    left, _ = np.linalg.qr(rng.standard_normal((rows, cols)))
    right, _ = np.linalg.qr(rng.standard_normal((cols, cols)))
    return (left @ np.diag(values) @ right.T).reshape(shape).astype(np.float32)


def test_block_convolutions_are_spectrally_normalised_in_training_mode():
    keras.utils.set_random_seed(4)
    block = SPADEResBlock(6, hidden=4)
    x, condition = _features((2, 4, 4, 8), 5), np.ones((2, 8, 8, 3), np.float32)
    block([x, condition])
    wrapped = (block.conv_0, block.conv_1, block.conv_shortcut)
    assert all(isinstance(layer, keras.layers.SpectralNormalization) for layer in wrapped)
    assert not any(isinstance(layer, keras.layers.SpectralNormalization) for layer in (block.spade_0.shared, block.spade_0.gamma))
    assert block.conv_shortcut.layer.use_bias is False and block.conv_shortcut.layer.kernel_size == (1, 1)
    for index, layer in enumerate(wrapped):
        shape = tuple(layer.layer.kernel.shape)
        values = [5.0, 1.0] + [0.5] * (shape[-1] - 2)  # largest singular value 5, gap 5x
        layer.layer.kernel.assign(_kernel_with_singular_values(shape, values, index))
    block([x, condition], training=False)  # inference leaves the kernels alone
    assert np.isclose(np.linalg.svd(block.conv_0.layer.kernel.numpy().reshape(-1, 6), compute_uv=False)[0], 5.0, rtol=1e-5)
    for _ in range(4):
        block([x, condition], training=True)
    for layer in wrapped:
        kernel = layer.layer.kernel.numpy()
        top = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]).astype(np.float64), compute_uv=False)[0]
        assert abs(top - 1.0) < 1e-2, (layer.name, top)


def test_block_hidden_width_and_identity_shortcut():
    block = SPADEResBlock(16, hidden=4)
    block([np.zeros((1, 4, 4, 8), np.float32), np.zeros((1, 4, 4, 3), np.float32)])
    assert block.conv_0.layer.filters == 8 and block.conv_1.layer.filters == 16 and block.learned_shortcut
    same = SPADEResBlock(8, hidden=4)
    x = _features((1, 4, 4, 8), 6)
    same([x, np.zeros((1, 4, 4, 3), np.float32)])
    assert not same.learned_shortcut
    same.conv_1.layer.kernel.assign(np.zeros(same.conv_1.layer.kernel.shape, np.float32))
    same.conv_1.layer.bias.assign(np.zeros(8, np.float32))
    assert np.allclose(same([x, np.zeros((1, 4, 4, 3), np.float32)]).numpy(), x)  # residual 0 -> identity


def test_generator_widths_follow_gaugan():
    assert generator_widths(64, 5) == (1024, 512, 256, 128, 64)  # GauGAN "normal"
    assert generator_widths(32, 4) == (256, 128, 64, 32)
    assert generator_widths(8, 1) == (8,)
    model = build_spade_generator(64, ngf=2, num_upsamplings=5, spade_hidden=4)
    assert model.get_layer("condition_resize").output.shape[1:3] == (2, 2)
    assert model.get_layer("condition_conv").filters == 32
    assert [model.get_layer(f"up_{i}").filters for i in range(4)] == [16, 8, 4, 2]
    assert [model.get_layer(name).filters for name in ("head", "middle_0", "middle_1")] == [32, 32, 32]


@pytest.mark.parametrize("size, ngf, upsamplings", [(24, 4, 3), (40, 3, 2), ((12, 20), 2, 2)])
def test_generator_output_shape_and_range_on_odd_sizes(size, ngf, upsamplings):
    keras.utils.set_random_seed(7)
    model = build_spade_generator(size, condition_channels=5, ngf=ngf, num_upsamplings=upsamplings, spade_hidden=8)
    height, width = (size, size) if isinstance(size, int) else size
    model.get_layer("to_image").kernel.assign(50.0 * np.ones(model.get_layer("to_image").kernel.shape, np.float32))
    condition = np.random.default_rng(0).uniform(-1, 1, (2, height, width, 5)).astype(np.float32)
    out = model(condition).numpy()
    assert out.shape == (2, height, width, 1)
    assert np.all(np.abs(out) <= 1.0) and np.max(np.abs(out)) > 0.5  # tanh output, not all near 0


def test_generator_rejects_sizes_not_divisible_by_the_upsamplings():
    with pytest.raises(ValueError, match=r"image_size 20x20 is not divisible by 2\*\*num_upsamplings = 8"):
        build_spade_generator(20, num_upsamplings=3, ngf=2)
    with pytest.raises(ValueError, match="must be >= 1"):
        build_spade_generator(32, ngf=0)


def test_generator_round_trips_through_a_keras_file(tmp_path):
    keras.utils.set_random_seed(8)
    model = build_spade_generator(8, condition_channels=3, ngf=2, num_upsamplings=2, spade_hidden=4)
    condition = np.random.default_rng(1).uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)
    path = str(tmp_path / "generator.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert np.array_equal(loaded(condition).numpy(), model(condition).numpy())
