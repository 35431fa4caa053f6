"""What a site's GAN trains on (paper Sec. 2.2, GAN pre-training): the site's labelled training volumes
with their **ground-truth** label maps, the CT the simulator makes for them, and the real CT slices
that supervise the output.

The conditioning CT of a volume is, for ``material="learned"``, the coarse CT rendered from ``G_M``'s
material map of that volume's learned code, trilinearly upsampled to the label grid
(:func:`learned_ct`); for ``material="fixmat"``, the Fix-Mat atlas of its ground-truth labels rendered
through the CT simulator on the label grid (:func:`fixmat_ct`). Volumes are ``[N, Z, Y, X]`` on the
label grid; slices are axial.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from fedsim_tf.models.conditioning import condition_slices, trilinear_upsample
from fedsim_tf.models.generative_model import GenerativeModel
from fedsim_tf.physics.ct_simulator import ConeBeamCT, CTSimulator, fix_mat_attenuation


@dataclass(frozen=True)
class SliceSource:
    """One site's volumes, ready to draw GAN training slices from.

    Attributes:
        ct: ``[N, Z, Y, X]`` float32 conditioning CT on the ``[-1, 1]`` scale.
        labels: ``[N, Z, Y, X]`` uint8 ground-truth label indices 0..7.
        images: ``[N, Z, Y, X]`` float32 real CT on the ``[-1, 1]`` scale.
        case_ids: ``N`` case ids.
    """

    ct: np.ndarray
    labels: np.ndarray
    images: np.ndarray
    case_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if not (self.ct.shape == self.labels.shape == self.images.shape) or self.ct.ndim != 4:
            raise ValueError(f"SliceSource needs [N, Z, Y, X] ct, labels and images of one shape, got {self.ct.shape}, "
                             f"{self.labels.shape}, {self.images.shape}")
        if len(self.case_ids) != len(self.ct):
            raise ValueError(f"SliceSource: {len(self.case_ids)} case ids for {len(self.ct)} volumes")

    @property
    def depth(self) -> int:
        """``K``, slices per volume."""
        return int(self.ct.shape[1])

    def slices(self, cases: np.ndarray, ks: np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
        """Conditioning maps ``[B, Y, X, 10]`` and real slices ``[B, Y, X, 1]`` of slices ``ks`` of ``cases``."""
        condition = condition_slices(self.ct[cases, ks], self.labels[cases, ks], ks, self.depth)
        return condition, tf.constant(self.images[cases, ks][..., None], tf.float32)

    def draw(self, rng: np.random.Generator, batch: int) -> tuple[tf.Tensor, tf.Tensor]:
        """A random batch: ``batch`` (volume, slice) pairs drawn uniformly over all volumes and slices ``k``."""
        return self.slices(rng.integers(len(self.ct), size=batch), rng.integers(self.depth, size=batch))


def learned_ct(material_generator: keras.Model, simulator: CTSimulator, codes: np.ndarray,
               label_shape: tuple[int, int, int]) -> np.ndarray:
    """``[n, Z, Y, X]``: ``G_M``'s coarse CT of each of a site's learned codes ``[n, D]``, upsampled to the
    label grid's shape ``(Z, Y, X)``."""
    coarse = simulator.scan(material_generator(tf.constant(codes, tf.float32)))
    return trilinear_upsample(coarse, label_shape).numpy()


def fixmat_ct(labels: np.ndarray, model: GenerativeModel) -> np.ndarray:
    """``[n, Z, Y, X]``: the Fix-Mat atlas of ``labels`` (``[n, Z, Y, X]`` indices) simulated on the label grid."""
    grid = model.label_grid
    scan = ConeBeamCT(grid.shape, tuple(grid.spacing_zyx), model.scanner, name="fixmat_scan")
    return np.concatenate([scan(fix_mat_attenuation(labels[i : i + 1], model.scanner)).numpy()
                           for i in range(len(labels))])
