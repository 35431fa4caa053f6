"""Table 2's blends: the heart (foreground) from the CT simulation, the background from the GAN.

Volumes are ``[Z, Y, X]`` float arrays on the ``[-1, 1]`` CT scale; the heart mask is ``[Z, Y, X]``
bool (label > 0).

* :func:`alpha_blend`: ``a * sim + (1 - a) * gan`` with ``a`` the heart mask feathered by a Gaussian
  of :data:`FEATHER_SIGMA_VOXELS` voxels (a hard 0/1 alpha leaves a one-voxel seam).
* :func:`poisson_blend`: Poisson image editing (Perez et al. 2003) of every axial slice with OpenCV's
  ``seamlessClone`` (normal cloning): inside the mask the result has the simulation's gradients, on
  its border the GAN's values. OpenCV works on 8-bit images and erodes the mask a few pixels, so the
  mask is dilated by :data:`POISSON_DILATION_VOXELS` first, and only the 8-bit *change* OpenCV makes is
  added to the float GAN slice: outside the dilated mask the result is the GAN slice exactly, inside
  it is within one 8-bit level (2 / 255 of the scale, about 4 HU) of OpenCV's solution.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from fedsim_tf.synthesis.variants import BLENDS

FEATHER_SIGMA_VOXELS = 1.0
POISSON_DILATION_VOXELS = 3


def _check(gan: np.ndarray, sim: np.ndarray, mask: np.ndarray) -> None:
    if gan.shape != sim.shape or gan.shape != mask.shape or gan.ndim != 3:
        raise ValueError(f"blending needs [Z, Y, X] gan, sim and mask of one shape, got {gan.shape}, {sim.shape}, "
                         f"{mask.shape}")


def alpha_blend(gan: np.ndarray, sim: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Feathered alpha blend of the simulated heart onto the GAN volume (float32 ``[Z, Y, X]``)."""
    _check(gan, sim, mask)
    alpha = ndimage.gaussian_filter(mask.astype(np.float64), FEATHER_SIGMA_VOXELS)
    return (alpha * sim + (1.0 - alpha) * gan).astype(np.float32)


def _to_8bit(image: np.ndarray) -> np.ndarray:
    """``[-1, 1]`` -> ``[0, 255]`` uint8, three identical channels (what ``seamlessClone`` takes)."""
    grey = np.clip(np.rint((image + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def poisson_blend(gan: np.ndarray, sim: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Slice-wise Poisson blend of the simulated heart into the GAN volume (float32 ``[Z, Y, X]``).

    Slices whose dilated mask is empty, or touches the slice border (where OpenCV cannot place the
    region), keep the GAN slice.
    """
    _check(gan, sim, mask)
    out = np.array(gan, dtype=np.float32)
    structure = ndimage.generate_binary_structure(2, 1)
    for k in range(gan.shape[0]):
        region = ndimage.binary_dilation(mask[k], structure, iterations=POISSON_DILATION_VOXELS)
        if not region.any() or region[0].any() or region[-1].any() or region[:, 0].any() or region[:, -1].any():
            continue
        x, y, width, height = cv2.boundingRect(region.astype(np.uint8))
        centre = (x + width // 2, y + height // 2)  # keeps the region where it is (OpenCV places its box here)
        background = _to_8bit(gan[k])
        cloned = cv2.seamlessClone(_to_8bit(sim[k]), background, region.astype(np.uint8) * 255, centre,
                                   cv2.NORMAL_CLONE)
        change = cloned[..., 0].astype(np.float32) - background[..., 0].astype(np.float32)
        out[k] += change / 127.5
    return out


def blend(kind: str, gan: np.ndarray, sim: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``none`` (the GAN volume), ``alpha`` or ``poisson``."""
    if kind not in BLENDS:
        raise ValueError(f"blend must be one of {', '.join(BLENDS)}, got {kind!r}")
    if kind == "alpha":
        return alpha_blend(gan, sim, mask)
    if kind == "poisson":
        return poisson_blend(gan, sim, mask)
    return np.asarray(gan, dtype=np.float32)
