"""Random 3D augmentation of an (image, label) pair for segmentation training.

One random similarity transform about the volume centre -- a rotation about the z (superior) axis
of up to ``rotate_z_deg``, small rotations about the y and x axes of up to ``rotate_xy_deg``, an
isotropic scale in ``scale`` -- is applied to both volumes (image trilinear, label nearest
neighbour, edges extended), then the image intensities are scaled, shifted and given Gaussian
noise. Every geometric transform is a proper rotation times a positive scale (determinant > 0):
there is **no mirroring**, in particular no left-right flip (the heart is not symmetric).
Volumes are assumed isotropic (as :mod:`fedsim_tf.data.preprocess` produces), so rotations act on
voxel indices. Randomness comes only from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class AugmentationConfig:
    """Ranges of the random transform (angles in degrees, intensities in normalised units).

    Attributes:
        rotate_z_deg: maximum absolute rotation about the z axis (in the axial y-x plane).
        rotate_xy_deg: maximum absolute rotation about each of the y and x axes.
        scale: (min, max) isotropic scale factor (> 1 enlarges the anatomy).
        intensity_scale: (min, max) multiplicative intensity factor.
        intensity_shift: maximum absolute additive intensity offset.
        noise_std: standard deviation of additive Gaussian noise.
    """

    rotate_z_deg: float = 15.0
    rotate_xy_deg: float = 5.0
    scale: tuple[float, float] = (0.9, 1.1)
    intensity_scale: tuple[float, float] = (0.9, 1.1)
    intensity_shift: float = 0.1
    noise_std: float = 0.02

    def __post_init__(self) -> None:
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be (min, max) with 0 < min <= max, got {self.scale}")
        if not 0 < self.intensity_scale[0] <= self.intensity_scale[1]:
            raise ValueError(f"intensity_scale must be (min, max) with 0 < min <= max, got {self.intensity_scale}")
        if min(self.rotate_z_deg, self.rotate_xy_deg, self.intensity_shift, self.noise_std) < 0:
            raise ValueError("rotation, shift and noise ranges must be non-negative")


def array_axis_rotation(axis: int, angle_deg: float) -> np.ndarray:
    """3x3 rotation on array coordinates ``(z, y, x)`` about array axis ``axis`` (0=z, 1=y, 2=x).

    The rotation acts in the plane of the two other axes, taken in increasing order: for
    ``axis=0``, ``(y, x) -> (y cos a - x sin a, y sin a + x cos a)``.
    """
    first, second = (a for a in range(3) if a != axis)
    angle = np.deg2rad(angle_deg)
    matrix = np.eye(3)
    matrix[first, first] = matrix[second, second] = np.cos(angle)
    matrix[first, second] = -np.sin(angle)
    matrix[second, first] = np.sin(angle)
    return matrix


def random_geometry(rng: np.random.Generator, config: AugmentationConfig) -> np.ndarray:
    """A random forward transform ``A`` (3x3 on ``(z, y, x)``): a point ``p`` moves to ``A (p - c) + c``."""
    angle_z = rng.uniform(-config.rotate_z_deg, config.rotate_z_deg)
    angle_y, angle_x = rng.uniform(-config.rotate_xy_deg, config.rotate_xy_deg, size=2)
    scale = rng.uniform(*config.scale)
    return scale * array_axis_rotation(0, angle_z) @ array_axis_rotation(1, angle_y) @ array_axis_rotation(2, angle_x)


def transform_pair(
    image: np.ndarray, label: np.ndarray, forward: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the forward transform ``forward`` about the volume centre to image and label.

    Args:
        image: ``[Z, Y, X]`` float image.
        label: ``[Z, Y, X]`` integer labels on the same grid.
        forward: 3x3 matrix on ``(z, y, x)`` voxel coordinates, determinant > 0.

    Returns:
        ``(image, label)``: float32 image (trilinear), label in its dtype (nearest neighbour);
        voxels mapped from outside the volume take the nearest edge value.
    """
    if image.shape != label.shape or image.ndim != 3:
        raise ValueError(f"image and label must be equal [Z, Y, X] shapes, got {image.shape} and {label.shape}")
    if np.linalg.det(forward) <= 0:
        raise ValueError("augmentation transform must not mirror (determinant must be positive)")
    inverse = np.linalg.inv(forward)
    centre = (np.asarray(image.shape, dtype=np.float64) - 1) / 2
    offset = centre - inverse @ centre
    warped_image = ndimage.affine_transform(
        image.astype(np.float32), inverse, offset=offset, order=1, mode="nearest", prefilter=False
    )
    warped_label = ndimage.affine_transform(label, inverse, offset=offset, order=0, mode="nearest")
    return warped_image, warped_label


def augment(
    image: np.ndarray, label: np.ndarray, rng: np.random.Generator, config: AugmentationConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Randomly augment one training pair (see the module docstring).

    Args:
        image: ``[Z, Y, X]`` float image (normalised intensities, e.g. in [-1, 1]).
        label: ``[Z, Y, X]`` integer labels.
        rng: the source of randomness (seed it for reproducible augmentation).
        config: ranges of the random transform.

    Returns:
        ``(image, label)`` with the input shapes; float32 image, label dtype unchanged.
    """
    image, label = transform_pair(image, label, random_geometry(rng, config))
    gain = rng.uniform(*config.intensity_scale)
    shift = rng.uniform(-config.intensity_shift, config.intensity_shift)
    noise = rng.normal(0.0, config.noise_std, size=image.shape) if config.noise_std > 0 else 0.0
    return (image * gain + shift + noise).astype(np.float32), label
