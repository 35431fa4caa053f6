"""3D U-Net builders: output shapes, channel plan, odd sizes, and a small overfitting check."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from fedsim_tf.losses.segmentation import dice_ce_loss
from fedsim_tf.models.unet3d import build_unet3d


@pytest.mark.parametrize("name", ["cicek", "nnunet"])
def test_output_shape_binary_and_multiclass(name: str) -> None:
    model = build_unet3d(name, (16, 16, 16), base_filters=4)
    assert model(np.zeros((2, 16, 16, 16, 1), np.float32)).shape == (2, 16, 16, 16, 1)
    model8 = build_unet3d(name, (16, 16, 16), base_filters=4, num_classes=8)
    assert model8.output_shape == (None, 16, 16, 16, 8)


def test_cicek_channel_plan() -> None:
    model = build_unet3d("cicek", (8, 8, 8), base_filters=32)
    widths = [model.get_layer(f"enc{i}{ab}_conv").filters for i in range(3) for ab in "ab"]
    widths += [model.get_layer(f"bottom_{ab}_conv").filters for ab in "ab"]
    assert widths == [32, 64, 64, 128, 128, 256, 256, 512]
    assert model.get_layer("up2").filters == 512  # up-conv keeps the channel count
    assert isinstance(model.get_layer("pool0"), keras.layers.MaxPooling3D)


def test_nnunet_widths_capped_at_320() -> None:
    model = build_unet3d("nnunet", (32, 32, 32), base_filters=32, levels=6)
    widths = [model.get_layer(f"enc{i}a_conv").filters for i in range(6)]
    assert widths == [32, 64, 128, 256, 320, 320]
    assert model.get_layer("enc1a_conv").strides == (2, 2, 2)
    norm = model.get_layer("enc0a_in")
    assert isinstance(norm, keras.layers.GroupNormalization) and norm.groups == 32  # one group per channel


@pytest.mark.parametrize("name", ["cicek", "nnunet"])
def test_odd_sizes_padded_and_cropped_back(name: str) -> None:
    model = build_unet3d(name, (13, 18, 21), base_filters=2)
    assert model(np.zeros((1, 13, 18, 21, 1), np.float32)).shape == (1, 13, 18, 21, 1)


def test_odd_sizes_rejected_without_padding() -> None:
    with pytest.raises(ValueError, match="not divisible by 8"):
        build_unet3d("cicek", (13, 16, 16), base_filters=2, pad_to_fit=False)
    with pytest.raises(ValueError, match="unknown U-Net"):
        build_unet3d("vnet", (16, 16, 16))


def _ellipsoid(shape: int, centre: tuple, radii: tuple) -> np.ndarray:
    z, y, x = np.mgrid[:shape, :shape, :shape]
    return ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2 <= 1


def test_overfits_two_noisy_ellipsoids() -> None:
    """Two 16^3 volumes: bright ellipsoids plus noise; training Dice must exceed 0.9 within 60 steps."""
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(0)
    labels = np.stack([_ellipsoid(16, (8, 7, 9), (4, 5, 3.5)), _ellipsoid(16, (7, 9, 7), (4.5, 3.5, 4))])
    images = (labels * 1.0 - 0.5 + rng.normal(0, 0.3, labels.shape)).astype(np.float32)[..., None]
    labels = labels.astype(np.uint8)
    model = build_unet3d("nnunet", (16, 16, 16), base_filters=8, levels=3)
    optimizer = keras.optimizers.Adam(1e-2)

    @tf.function
    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = dice_ce_loss(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    for _ in range(60):
        step(images, labels)
    prediction = model(images, training=False).numpy()[..., 0] > 0
    overlap = (prediction & (labels > 0)).sum(axis=(1, 2, 3))
    dice = 2 * overlap / (prediction.sum(axis=(1, 2, 3)) + labels.sum(axis=(1, 2, 3)))
    assert dice.min() > 0.9, dice
