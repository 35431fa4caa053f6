"""The out-of-distribution study (:mod:`fedsim_tf.experiments.ood`, :mod:`fedsim_tf.synthesis.translation`):
the GAN's CT channel against hand-computed block means and their linear interpolation, the conditioning maps
through a generator that copies one input channel, Dice against hand-counted masks, the Markdown against
hand-made outputs, and a tiny end-to-end run whose real-CT Dice must equal what ``segment`` recorded."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from fedsim_tf.data.nifti import read_nifti
from fedsim_tf.errors import UserInputError
from fedsim_tf.experiments import ood, table3_cells
from fedsim_tf.experiments.cells import POOLED, Cell
from fedsim_tf.intensity import HU_WINDOW
from fedsim_tf.models.slice_synthesis import SliceSynthesizer
from fedsim_tf.synthesis.translation import coarse_ct_channel, translate
from fedsim_tf.training.segmentation import Volumes

# A 4^3 volume a[z] + 10 b[x]; blocks of 2: a -> means (0+2)/2 = 1, (4+8)/2 = 6; b -> (1+3)/2 = 2, (5+5)/2 = 5.
# Coarse centres sit at fine 0.5 and 2.5: fine 0 and 3 hold the outer values, fine 1 and 2 lie 1/4 and 3/4 of the way.
A_Z = np.array([0.0, 2.0, 4.0, 8.0])
B_X = np.array([1.0, 3.0, 5.0, 5.0])
A_UP = np.array([1.0, 0.75 * 1 + 0.25 * 6, 0.25 * 1 + 0.75 * 6, 6.0])  # 1, 2.25, 4.75, 6
B_UP = np.array([2.0, 0.75 * 2 + 0.25 * 5, 0.25 * 2 + 0.75 * 5, 5.0])  # 2, 2.75, 4.25, 5


def _ramp_volume() -> tuple[np.ndarray, np.ndarray]:
    """``(volume, expected GAN CT channel)``, both ``[4, 4, 4]`` ``[z, y, x]``, scaled into [-1, 1]."""
    volume = (A_Z[:, None, None] + 10 * B_X[None, None, :]) * np.ones((4, 4, 4))
    expected = (A_UP[:, None, None] + 10 * B_UP[None, None, :]) * np.ones((4, 4, 4))
    return (volume / 100.0).astype(np.float32), expected / 100.0


def test_coarse_ct_channel_is_the_block_mean_linearly_interpolated_back() -> None:
    volume, expected = _ramp_volume()
    np.testing.assert_allclose(coarse_ct_channel(volume, 2), expected, atol=1e-6)
    np.testing.assert_allclose(coarse_ct_channel(volume, 4), volume, atol=1e-6)  # blocks of one voxel: unchanged


def _channel_copier(channel: int, size: int = 4) -> keras.Model:
    """A generator ``[B, size, size, 10] -> [B, size, size, 1]`` that outputs input channel ``channel``."""
    inputs = keras.Input((size, size, 10))
    layer = keras.layers.Conv2D(1, 1, use_bias=False)
    outputs = layer(inputs)
    kernel = np.zeros((1, 1, 10, 1), np.float32)
    kernel[0, 0, channel, 0] = 1.0
    layer.set_weights([kernel])
    return keras.Model(inputs, outputs)


def test_translation_feeds_the_gan_the_coarse_ct_the_one_hot_labels_and_the_slice_plane() -> None:
    volume, expected = _ramp_volume()
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[1, 2, 3] = labels[3, 0, 0] = 3
    labels[2, 1, 1] = 5
    for channel, truth in [(0, expected), (1 + 3, labels == 3), (1 + 5, labels == 5), (1, labels == 0),
                           (9, np.broadcast_to(np.arange(4)[:, None, None] / 4.0, (4, 4, 4)))]:
        slices = SliceSynthesizer(_channel_copier(channel), batch_size=3)  # 4 slices: one padded batch
        np.testing.assert_allclose(translate(slices, volume, labels, 2), truth, atol=1e-6, err_msg=f"channel {channel}")


def _thresholding_unet() -> keras.Model:
    """A "U-Net" on ``[B, 4, 4, 4, 1]`` whose logit is the image itself: foreground = image > 0."""
    inputs = keras.Input((4, 4, 4, 1))
    layer = keras.layers.Conv3D(1, 1)
    outputs = layer(inputs)
    layer.set_weights([np.ones((1, 1, 1, 1, 1), np.float32), np.zeros(1, np.float32)])
    return keras.Model(inputs, outputs)


def test_network_dice_counts_overlap_per_volume_and_leaves_empty_truths_out() -> None:
    images = -np.ones((3, 4, 4, 4), np.float32)
    labels = np.zeros((3, 4, 4, 4), np.uint8)
    labels[0, 0, 0, :4] = labels[0, 0, 1, :4] = 1  # 8 foreground voxels ...
    labels[0, 0, 2, :2] = 7  # ... + 2 = 10
    images[0, 0, 0, :4] = 0.5  # 4 predicted inside the truth ...
    images[0, 3, 3, :2] = 0.9  # ... + 2 outside: Dice 2 * 4 / (6 + 10) = 0.5
    images[1, 1, 1, 1] = 0.2  # a prediction, no truth: None
    labels[2, 2, 2, 2] = labels[2, 2, 2, 3] = 2
    images[2, 2, 2, :] = 0.1  # the 2 true voxels + 2 more: 2 * 2 / (4 + 2) = 2/3
    dice = ood.network_dice(_thresholding_unet(), Volumes(("a", "b", "c"), images, labels), 0)
    assert list(dice) == ["a", "b", "c"] and dice["b"] is None
    assert dice["a"] == pytest.approx(0.5) and dice["c"] == pytest.approx(2 / 3)


def test_markdown_has_one_table_per_setting_and_fold_with_mean_and_std_in_percent() -> None:
    outputs = [
        {"site": "A", "fold": 0, "setting": "low", "network": "Upper Bound", "real": {"a1": 0.8, "a2": 0.6},
         "translated": {"A": {"a1": 0.5, "a2": None}, "B": {"a1": 0.2, "a2": 0.4}}},
        {"site": "B", "fold": 0, "setting": "low", "network": "Upper Bound", "real": {"b1": 0.9},
         "translated": {"A": {"b1": 0.1}, "B": {"b1": None}}},
        {"site": "A", "fold": 1, "setting": "low", "network": "Upper Bound", "real": {"a3": 0.25},
         "translated": {"A": {"a3": 0.125}, "B": {"a3": 0.5}}},
    ]
    lines = ood.markdown_lines(outputs)
    assert lines[0] == "## Out of distribution"
    assert any("Upper Bound" in line and "downsampled" in line for line in lines[1:3])
    first = lines.index("### label sizes `low`, fold 0")
    assert lines[first + 2: first + 6] == [
        "| Network of site | Real CT | GAN of A | GAN of B |", "|---|---|---|---|",
        "| A | 70.00 ± 10.00 | 50.00 ± 0.00 | 30.00 ± 10.00 |",
        "| B | 90.00 ± 0.00 | 10.00 ± 0.00 | n/a |"]
    second = lines.index("### label sizes `low`, fold 1")
    assert lines[second + 4] == "| A | 25.00 ± 0.00 | 12.50 ± 0.00 | 50.00 ± 0.00 |"
    assert ood.markdown_lines([{**outputs[0], "setting": ""}])[4] == "### the run's label sizes, fold 0"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, table3_cells.StageConfigs]:
    """Two tiny sites (:mod:`tests.experiments.table3_harness`), each site's own generator and learned GAN, and
    site A's Upper Bound fold 0, made by the protocol's own cells."""
    from tests.experiments.table3_harness import config
    from tests.stages.sites import write_site

    root = tmp_path_factory.mktemp("ood")
    write_site(root / "A", 5, seed=1)
    write_site(root / "B", 5, seed=2)
    stages = config(root).stages
    for cell in [Cell("pretrain", 0, "", "A"), Cell("pretrain", 0, "", "B"),
                 Cell("pretrain_gan", 0, "", "A", "A", material="learned"),
                 Cell("pretrain_gan", 0, "", "B", "B", material="learned"),
                 Cell("segment", 0, "", site="A", method="Upper Bound")]:
        table3_cells.execute(stages, cell)
    return root, stages


GENERATORS = {"A": "A", "B": "B"}


def test_real_dice_is_what_segment_recorded_and_every_gan_renders_every_test_volume(tiny) -> None:
    root, stages = tiny
    cell = Cell("ood", 0, "", site="A")
    output = ood.execute(stages, cell, GENERATORS)
    (result_path,) = (root / "work" / "segment").glob("segment_upper_A_*/fold0/result.json")
    recorded = json.loads(result_path.read_text())["test_dice"]
    assert output["site"] == "A" and output["fold"] == 0 and output["network"] == "Upper Bound"
    assert sorted(output["real"]) == sorted(recorded) and len(recorded) == 1
    for case, value in recorded.items():
        assert output["real"][case] == pytest.approx(value, abs=1e-12)
    assert sorted(output["translated"]) == ["A", "B"]
    for site, dice in output["translated"].items():
        assert sorted(dice) == sorted(recorded)
        for case, value in dice.items():
            assert value is not None and 0.0 <= value <= 1.0
            folder = root / "work" / "experiment" / "ood" / cell.key / site
            image, image_grid = read_nifti(folder / f"{case}_image.nii.gz")
            label, label_grid = read_nifti(folder / f"{case}_label.nii.gz")
            assert image.shape == label.shape == (16, 16, 16)
            np.testing.assert_allclose(image_grid.affine, label_grid.affine)
            np.testing.assert_allclose(np.diag(image_grid.affine)[:3], [7.5, 7.5, 7.5])  # 120 mm over 16 voxels
            assert HU_WINDOW[0] <= image.min() and image.max() <= HU_WINDOW[1] and image.std() > 0
            assert set(np.unique(label)) <= {0, 205, 420, 500, 550, 600, 820, 850} and np.any(label == 500)
    json.dumps(output)
    settings = ood.settings(stages, cell, GENERATORS)
    json.dumps(settings)
    for site in GENERATORS:  # the settings name the GAN folders that exist
        assert Path(settings["gans"][site]["folder"]).name == f"{site}-learned"
        assert (Path(settings["gans"][site]["folder"]) / "gan.json").is_file()
    assert settings["network"]["mode"] == "upper"
    longer = dataclasses.replace(stages, pretrain_gan=dataclasses.replace(stages.pretrain_gan, steps=3))
    assert ood.settings(longer, cell, GENERATORS)["gans"]["B"]["config"]["steps"] == 3
    pooled = ood.settings(stages, cell, {"A": POOLED, "B": POOLED})["gans"]
    # a pooled chain's GAN of B learns from both sites' volumes: another training set, another folder
    assert Path(pooled["B"]["folder"]).name == "B-learned" and pooled["B"]["folder"] != settings["gans"]["B"]["folder"]


def test_a_network_not_trained_yet_is_one_clear_error(tiny) -> None:
    _, stages = tiny
    with pytest.raises(UserInputError, match="all-labels_fold0_segment_B_Upper-Bound"):
        ood.execute(stages, Cell("ood", 0, "", site="B"), GENERATORS)
