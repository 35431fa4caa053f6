"""Augmentation keeps image and label aligned, moves anatomy as the matrix says, never mirrors."""

import numpy as np

from fedsim_tf.training.augmentation import (
    AugmentationConfig, augment, random_geometry, array_axis_rotation, transform_pair,
)

N = 32


def _ball(centre: tuple[float, float, float], radius: float) -> np.ndarray:
    z, y, x = np.mgrid[:N, :N, :N]
    return ((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2).astype(np.uint8)


def test_rotation_about_z_moves_sphere_to_hand_computed_place() -> None:
    label = _ball((15.5, 15.5, 24.5), 4)  # 9 voxels right of the centre along x
    image = label.astype(np.float32) * 2 - 1
    warped_image, warped_label = transform_pair(image, label, array_axis_rotation(0, 90.0))
    # (y, x) offset (0, 9) rotated by +90 degrees: (y cos - x sin, y sin + x cos) = (-9, 0)
    centroid = np.argwhere(warped_label > 0).mean(axis=0)
    np.testing.assert_allclose(centroid, (15.5, 6.5, 15.5), atol=0.3)
    assert abs(int(warped_label.sum()) - int(label.sum())) <= 0.05 * label.sum()
    np.testing.assert_array_equal(warped_image > 0, warped_label > 0)  # still the same sphere, aligned


def test_random_augmentation_keeps_pair_aligned() -> None:
    label = _ball((14, 17, 19), 6)
    image = label.astype(np.float32) * 2 - 1
    config = AugmentationConfig(intensity_scale=(1.0, 1.0), intensity_shift=0.0, noise_std=0.0)
    for seed in range(3):
        out_image, out_label = augment(image, label, np.random.default_rng(seed), config)
        agreement = np.mean((out_image > 0) == (out_label > 0))
        assert agreement > 0.995
        assert out_label.dtype == np.uint8 and set(np.unique(out_label)) <= {0, 1}


def test_never_mirrors_left_right() -> None:
    config = AugmentationConfig(rotate_z_deg=15, rotate_xy_deg=5, scale=(0.9, 1.1))
    rng = np.random.default_rng(0)
    for _ in range(200):
        assert np.linalg.det(random_geometry(rng, config)) > 0
    label = _ball((16, 16, 26), 3)  # a blob on the +x (patient right) side stays there
    image = label.astype(np.float32)
    for seed in range(5):
        _, out_label = augment(image, label, np.random.default_rng(seed), config)
        assert np.argwhere(out_label > 0)[:, 2].mean() > 22


def test_seeded_and_intensity_changes() -> None:
    label = _ball((16, 16, 16), 5)
    image = label.astype(np.float32)
    config = AugmentationConfig()
    a = augment(image, label, np.random.default_rng(7), config)
    b = augment(image, label, np.random.default_rng(7), config)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.allclose(a[0][label > 0], 1.0)  # intensity scale/shift/noise were applied
