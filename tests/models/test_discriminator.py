"""Multi-scale PatchGAN: feature shapes per scale (hand-computed), layer plan, exclude-pad average pooling."""

import numpy as np
import keras
import tensorflow as tf

from fedsim_tf.models.discriminator import AveragePoolExcludePad, build_multiscale_discriminator


def test_feature_shapes_per_scale_are_the_pytorch_ones():
    # 4x4 kernels with 2 pixels of padding: stride 2 -> floor(H / 2) + 1, stride 1 -> H + 1.
    # Scale 0 (32): 17, 9, 5 (stride 2), 6, 7 (stride 1); scale 1 sees ceil(32 / 2) = 16: 9, 5, 3, 4, 5.
    model = build_multiscale_discriminator(32, condition_channels=3, ndf=4, n_layers=4, num_d=2)
    outputs = model([np.zeros((2, 32, 32, 3), np.float32), np.zeros((2, 32, 32, 1), np.float32)])
    shapes = [[tuple(feature.shape) for feature in scale] for scale in outputs]
    assert shapes == [
        [(2, 17, 17, 4), (2, 9, 9, 8), (2, 5, 5, 16), (2, 6, 6, 32), (2, 7, 7, 1)],
        [(2, 9, 9, 4), (2, 5, 5, 8), (2, 3, 3, 16), (2, 4, 4, 32), (2, 5, 5, 1)],
    ]


def _conv(model: keras.Model, scale: int, index: int) -> keras.layers.Conv2D:
    names = [layer.name for layer in model.layers]
    name = f"scale_{scale}_conv_{index}"
    return model.get_layer(name) if name in names else model.get_layer(f"{name}_sn").layer


def test_widths_cap_at_512_and_three_scales():
    model = build_multiscale_discriminator(16, condition_channels=2, ndf=256, n_layers=3, num_d=3)
    assert [_conv(model, 0, i).filters for i in range(4)] == [256, 512, 512, 1]
    assert [_conv(model, 0, i).strides for i in range(4)] == [(2, 2), (2, 2), (1, 1), (1, 1)]
    assert len(model.outputs) == 3 * 4


def test_spectral_and_instance_norm_only_on_the_middle_layers():
    model = build_multiscale_discriminator(16, condition_channels=2, ndf=4, n_layers=4, num_d=2)
    for scale in range(2):
        for index in (0, 4):
            conv = model.get_layer(f"scale_{scale}_conv_{index}")
            assert isinstance(conv, keras.layers.Conv2D) and conv.use_bias
        for index in (1, 2, 3):
            wrapper = model.get_layer(f"scale_{scale}_conv_{index}_sn")
            assert isinstance(wrapper, keras.layers.SpectralNormalization) and not wrapper.layer.use_bias
            norm = model.get_layer(f"scale_{scale}_norm_{index}")
            assert isinstance(norm, keras.layers.GroupNormalization) and not norm.weights  # parameter-free


def test_average_pool_excludes_padding_from_the_mean():
    x = np.arange(5 * 6, dtype=np.float32).reshape(1, 5, 6, 1) ** 1.5
    got = AveragePoolExcludePad()(tf.constant(x)).numpy()
    expected = np.zeros((1, 3, 3, 1))
    for i in range(3):
        for j in range(3):
            window = x[0, max(2 * i - 1, 0) : 2 * i + 2, max(2 * j - 1, 0) : 2 * j + 2, 0]
            expected[0, i, j, 0] = window.mean()
    assert got.shape == (1, 3, 3, 1)
    assert np.allclose(got, expected, rtol=1e-6)
    # Corner (0, 0): mean of x[0:2, 0:2] = (0 + 1 + 6 ** 1.5 + 7 ** 1.5) / 4, not divided by 9.
    assert np.isclose(got[0, 0, 0, 0], (0 + 1 + 6**1.5 + 7**1.5) / 4, rtol=1e-6)


def test_the_input_is_condition_and_image_together():
    keras.utils.set_random_seed(3)
    model = build_multiscale_discriminator(16, condition_channels=2, ndf=4, n_layers=2, num_d=1)
    condition = np.random.default_rng(0).uniform(-1, 1, (1, 16, 16, 2)).astype(np.float32)
    image = np.random.default_rng(1).uniform(-1, 1, (1, 16, 16, 1)).astype(np.float32)
    base = model([condition, image])[0][-1].numpy()
    assert not np.allclose(model([condition, -image])[0][-1].numpy(), base, atol=1e-6)
    assert not np.allclose(model([-condition, image])[0][-1].numpy(), base, atol=1e-6)
