"""A site's GAN applied to a real labelled volume (paper Sec. 3, the out-of-distribution study): the volume's
ground-truth label map and its own CT, downsampled to the coarse grid, take the place of ``G_M``'s coarse CT
and ``G_S``'s labels in the GAN's input, and ``G_GAN`` renders every slice in its site's appearance.

The CT channel is built as the learned-material GAN saw it in training (:func:`fedsim_tf.training.gan_data.learned_ct`):
a ``c``\\ :sup:`3` coarse CT on the ``[-1, 1]`` scale of :mod:`fedsim_tf.intensity`, trilinearly upsampled to the
label grid. Here the coarse CT is the block mean of the real volume (:func:`fedsim_tf.data.preprocess.area_downsample`,
the target ``G_M``'s coarse CT was fitted to in pre-training). Volumes are ``[Z, Y, X]``; slices are axial.
"""

from __future__ import annotations

import numpy as np

from fedsim_tf.data.preprocess import area_downsample
from fedsim_tf.models.conditioning import condition_volume, trilinear_upsample
from fedsim_tf.models.slice_synthesis import SliceSynthesizer


def coarse_ct_channel(image: np.ndarray, coarse_size: int) -> np.ndarray:
    """The GAN's CT channel of a real volume: its block mean on the ``coarse_size``\\ :sup:`3` grid, upsampled back.

    Args:
        image: ``[N, N, N]`` real CT on the ``[-1, 1]`` scale; ``coarse_size`` divides ``N``.
        coarse_size: ``c``, the coarse grid's edge (the generative model's ``coarse_size``).

    Returns:
        ``[N, N, N]`` float32 on the ``[-1, 1]`` scale.
    """
    coarse = area_downsample(np.asarray(image, np.float32), coarse_size)
    return trilinear_upsample(coarse[None], image.shape).numpy()[0]


def translate(slices: SliceSynthesizer, image: np.ndarray, labels: np.ndarray, coarse_size: int) -> np.ndarray:
    """``G_GAN``'s rendering of a real volume from its labels and downsampled CT.

    Args:
        slices: the GAN's generator over the slices of a volume.
        image: ``[N, N, N]`` real CT on the ``[-1, 1]`` scale.
        labels: ``[N, N, N]`` integer label indices 0..7 of the same grid.
        coarse_size: the coarse grid's edge (:func:`coarse_ct_channel`).

    Returns:
        ``[N, N, N]`` float32 CT on the ``[-1, 1]`` scale.
    """
    condition = condition_volume(coarse_ct_channel(image, coarse_size), np.asarray(labels))
    return slices(condition.numpy())[..., 0]
