"""Preprocessing against analytic and hand-computed truths."""

from __future__ import annotations

import numpy as np
import pytest

from fedsim_tf.data.preprocess import (
    PreprocessConfig,
    area_downsample,
    blood_pool_centre,
    coarse_grid,
    normalise_hu,
    preprocess_case,
    resample,
)
from fedsim_tf.grid import Grid

from .synthetic import diag_grid, toy_case


def _ramp_hu(xyz: np.ndarray) -> np.ndarray:
    return 2.0 * xyz[..., 0] + 3.0 * xyz[..., 1] - xyz[..., 2] + 100.0


@pytest.mark.parametrize("antialias", [False, True])
def test_linear_ramp_stays_linear_after_spacing_change(antialias: bool) -> None:
    source = diag_grid((40, 50, 60), (0.5, 0.6, 0.8), (-15.0, -15.0, -16.0))
    image = _ramp_hu(source.voxel_centres()).astype(np.float32)
    target = Grid.centred(16, 16 * 1.25, (1.0, -2.0, 0.5))
    out = resample(image, source, target, order=1, cval=-1024.0, antialias=antialias)
    assert out.shape == (16, 16, 16) and out.dtype == np.float32
    np.testing.assert_allclose(out, _ramp_hu(target.voxel_centres()), atol=2e-3)


def test_preprocess_case_gives_the_normalised_ramp_around_the_crop_centre() -> None:
    source = diag_grid((40, 50, 60), (0.5, 0.6, 0.8), (-15.0, -15.0, -16.0))
    image = _ramp_hu(source.voxel_centres()).astype(np.float32)
    label = np.zeros(source.shape, np.uint8)
    label[18:22, 23:27, 28:32] = 2
    centre = blood_pool_centre(image, source)  # the crop rule (tested on its own below)
    config = PreprocessConfig(spacing_mm=1.25, grid_size=16, coarse_size=4)
    case = preprocess_case(image, label, source, config, case_id="ramp")
    expected_grid = Grid.centred(16, 20.0, tuple(centre))
    np.testing.assert_allclose(case.grid.affine, expected_grid.affine, atol=1e-9)
    ijk = source.world_to_index(expected_grid.voxel_centres())
    last = np.array(source.shape[::-1]) - 1
    inside = np.all((ijk >= 3) & (ijk <= last - 3), axis=-1)  # 3 source voxels from the edge: anti-aliasing exact
    outside = np.any((ijk < -1) | (ijk > last + 1), axis=-1)
    assert inside.sum() > 500 and outside.sum() > 500  # the crop reaches past the source
    hu = np.clip(_ramp_hu(expected_grid.voxel_centres()), -200.0, 800.0)
    np.testing.assert_allclose(case.image[inside], ((hu + 200.0) / 500.0 - 1.0)[inside], atol=1e-5)
    np.testing.assert_allclose(case.image[outside], -1.0, atol=1e-5)  # beyond the source: air
    assert case.image.dtype == np.float32 and case.coarse.shape == (4, 4, 4)


def test_nearest_label_resampling_keeps_the_label_set() -> None:
    source = diag_grid((30, 30, 30), (0.7, 0.7, 0.9))
    label = np.zeros(source.shape, np.uint8)
    label[2:12, 2:12, 2:12] = 2
    label[15:28, 3:14, 10:25] = 5
    label[5:20, 16:28, 16:28] = 7
    target = Grid.centred(20, 20 * 1.1, (10.0, 10.0, 13.0))
    out = resample(label, source, target, order=0, cval=0)
    assert out.dtype == np.uint8
    assert set(np.unique(out).tolist()) == {0, 2, 5, 7}


def _cube_case() -> tuple[np.ndarray, np.ndarray, Grid]:
    grid = diag_grid((40, 40, 40), (1.0, 1.0, 1.0))
    image = np.zeros(grid.shape, np.int16)
    label = np.zeros(grid.shape, np.uint8)
    return image, label, grid


def test_the_crop_ignores_the_label() -> None:
    # A blood cube (300 HU) labelled 4, and a decoy label far from it: the crop follows the image only,
    # so the labelled and the unlabelled preprocessing of the same image share one grid.
    image, label, grid = _cube_case()
    image[8:16, 20:28, 12:20] = 300
    label[8:16, 20:28, 12:20] = 4
    decoy = label.copy()
    decoy[30:34, 30:34, 30:34] = 1
    config = PreprocessConfig(1.0, 15, 5, antialias=False)
    unlabelled = preprocess_case(image, None, grid, config)
    for with_label in (label, decoy):
        case = preprocess_case(image, with_label, grid, config)
        np.testing.assert_array_equal(case.grid.affine, unlabelled.grid.affine)
        np.testing.assert_array_equal(case.image, unlabelled.image)
    # blood_pool_centre samples every 4th voxel (4 mm): the cube's samples 8, 12 (z), 20, 24 (y), 12, 16
    # (x) average to (x, y, z) = (14, 22, 10) mm; voxel 0 of the 15^3 crop sits 7 mm below.
    np.testing.assert_allclose(unlabelled.grid.affine[:3, 3], [7.0, 15.0, 3.0])
    # The label lands on that grid: the cube spans mm 12..19 (x), 20..27 (y), 8..15 (z) -> voxels 5..12.
    expected = np.zeros((15, 15, 15), np.uint8)
    expected[5:13, 5:13, 5:13] = 4
    np.testing.assert_array_equal(preprocess_case(image, label, grid, config).label, expected)


def test_crop_pads_outside_the_field_of_view() -> None:
    image, label, grid = _cube_case()  # 40^3 voxels of 1 mm
    image[16:24, 16:24, 16:24] = 300
    label[16:24, 16:24, 16:24] = 1  # samples 16, 20 per axis: centre (18, 18, 18) mm
    case = preprocess_case(image, label, grid, PreprocessConfig(1.0, 48, 4, antialias=False))
    np.testing.assert_allclose(case.grid.affine[:3, 3], [-5.5, -5.5, -5.5])  # 48 voxels reach past 0..39
    inside = np.zeros((48, 48, 48), bool)
    inside[6:46, 6:46, 6:46] = True  # output voxels at 0.5 .. 39.5 mm read the source
    np.testing.assert_allclose(case.image[~inside], -1.0)  # padding reads as air
    assert case.label[~inside].max() == 0 and case.label.sum() == 8**3


def test_hu_normalisation_values() -> None:
    hu = np.array([-3000.0, -1000.0, -200.0, 0.0, 300.0, 800.0, 3000.0])
    np.testing.assert_allclose(normalise_hu(hu, (-200.0, 800.0)), [-1, -1, -1, -0.6, 0, 1, 1], atol=1e-7)
    np.testing.assert_allclose(normalise_hu(np.array([0.0, 500.0]), (-1000.0, 1000.0)), [0.0, 0.5])


def test_area_downsampling_and_coarse_grid() -> None:
    z, y, x = np.meshgrid(np.arange(4), np.arange(4), np.arange(4), indexing="ij")
    volume = (16 * z + 4 * y + x).astype(np.float32)
    coarse = area_downsample(volume, 2)
    a, b, c = np.meshgrid(np.arange(2), np.arange(2), np.arange(2), indexing="ij")
    np.testing.assert_allclose(coarse, 16 * (2 * a + 0.5) + 4 * (2 * b + 0.5) + (2 * c + 0.5))
    fine = diag_grid((4, 4, 4), (1.5, 1.5, 1.5), (10.0, 20.0, 30.0))
    cg = coarse_grid(fine, 2)
    np.testing.assert_allclose(cg.affine[:3, 3], [10.75, 20.75, 30.75])
    np.testing.assert_allclose(cg.spacing_zyx, [3.0, 3.0, 3.0])
    with pytest.raises(ValueError, match="multiple"):
        area_downsample(np.zeros((6, 6, 6)), 4)


def _ball(shape: tuple[int, int, int], centre_xyz: tuple[float, float, float], radius: float) -> np.ndarray:
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return (i - centre_xyz[0]) ** 2 + (j - centre_xyz[1]) ** 2 + (k - centre_xyz[2]) ** 2 <= radius ** 2


def test_unlabelled_centre_is_the_largest_central_blood_blob() -> None:
    shape = (48, 48, 48)
    grid = diag_grid(shape, (1.0, 1.0, 1.0), (-5.0, 0.0, 7.0))
    image = np.full(shape, 0, np.int16)
    image[_ball(shape, (26, 22, 25), 8)] = 300  # heart: the big contrast-filled blob
    image[_ball(shape, (16, 28, 20), 3)] = 350  # small vessel
    image[:, :, :5] = 400  # contrast in an arm vein, outside the central region
    image[10:20, 30:40, 30:38] = 1300  # bone: too bright
    centre = blood_pool_centre(image, grid)
    np.testing.assert_allclose(centre, [26 - 5.0, 22.0, 25 + 7.0], atol=1.5)
    case = preprocess_case(image, None, grid, PreprocessConfig(2.0, 8, 2))
    assert case.label is None and case.heart_mask is None and not case.labelled
    np.testing.assert_allclose(case.grid.affine[:3, 3], centre - 7.0)


def test_lps_and_ras_storage_preprocess_identically() -> None:
    image, label = toy_case()
    ras = diag_grid(image.shape, (0.8, 0.8, 1.0), (-10.0, 5.0, 0.0))
    nz, ny, nx = image.shape
    lps_affine = ras.affine.copy()
    lps_affine[0, 0], lps_affine[1, 1] = -0.8, -0.8
    lps_affine[0, 3], lps_affine[1, 3] = -10.0 + (nx - 1) * 0.8, 5.0 + (ny - 1) * 0.8
    config = PreprocessConfig(1.0, 8, 4)
    a = preprocess_case(image, label, ras, config)
    b = preprocess_case(image[:, ::-1, ::-1], label[:, ::-1, ::-1], Grid(image.shape, lps_affine), config)
    np.testing.assert_allclose(a.image, b.image, atol=1e-6)
    np.testing.assert_array_equal(a.label, b.label)
    np.testing.assert_allclose(a.grid.affine, b.grid.affine, atol=1e-9)
    assert set(np.unique(a.label).tolist()) == {0, 1, 3}


@pytest.mark.parametrize("kwargs, message", [
    ({"spacing_mm": 0.0}, "spacing_mm must be positive"),
    ({"grid_size": 20, "coarse_size": 16}, "coarse_size \\(16\\) must be positive and divide grid_size \\(20\\)"),
    ({"hu_window": (800.0, -200.0)}, "hu_window must be \\(lo, hi\\) with lo < hi"),
])
def test_config_rejects_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PreprocessConfig(**kwargs)
