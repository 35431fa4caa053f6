"""The complete generative process of the paper (Sec. 2.1) for one site: ``z`` -> ``G_S`` -> shape ->
label map ``Y_z``; ``z`` -> ``G_M`` -> material -> CT simulator -> coarse CT ``X~_z``; the site's
``G_GAN`` turns every slice ``k`` of ``(X~_z, Y_z, k)`` into the final CT slice ``X_{z,k}``.

Variants (paper Table 2 / Table 3 rows):

* ``shape``: ``learned`` (``G_S(z)``) or ``random`` (SSM weights and pose drawn uniformly within the
  shape-parameter ranges of the model);
* ``material``: ``learned`` (``G_M(z)`` rendered on the coarse grid, trilinearly upsampled) or
  ``fixmat`` (the fixed attenuation atlas of the label map, simulated on the label grid);
* ``blend``: the GAN's volume as it is, or the simulated heart blended onto it
  (:mod:`fedsim_tf.synthesis.blend`).

Volumes are ``[Z, Y, X]`` on the model's label grid, CT on the ``[-1, 1]`` scale of
:mod:`fedsim_tf.intensity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import keras
import numpy as np
import tensorflow as tf

from fedsim_tf.models.conditioning import condition_volume, trilinear_upsample
from fedsim_tf.models.slice_synthesis import SliceSynthesizer
from fedsim_tf.models.generative_model import GenerativeModel
from fedsim_tf.physics.ct_simulator import ConeBeamCT, CTSimulator, fix_mat_attenuation
from fedsim_tf.synthesis.blend import blend
from fedsim_tf.synthesis.variants import SHAPES


class GenerativeNetworks(Protocol):
    """``G_S``, ``G_M`` and the simulator of a generative model (e.g.
    :class:`fedsim_tf.training.pretrained.PretrainedModel`)."""

    model: GenerativeModel
    shape_generator: keras.Model
    material_generator: keras.Model
    simulator: CTSimulator


@dataclass(frozen=True)
class SyntheticVolume:
    """One generated labelled volume.

    Attributes:
        labels: ``[Z, Y, X]`` uint8 label indices 0..7.
        simulated: ``[Z, Y, X]`` float32 CT simulation the GAN was conditioned on (``[-1, 1]``).
        image: ``[Z, Y, X]`` float32 final CT (``[-1, 1]``).
    """

    labels: np.ndarray
    simulated: np.ndarray
    image: np.ndarray


class Synthesizer:
    """Generates labelled volumes of one site.

    Args:
        pretrained: ``G_S``, ``G_M`` and the simulator (e.g. at the pre-training checkpoint).
        generator: the site's ``G_GAN`` (``[B, Y, X, 10] -> [B, Y, X, 1]``).
        material: ``learned`` or ``fixmat``.
        slice_batch: slices per generator call (:class:`fedsim_tf.models.slice_synthesis.SliceSynthesizer`).
    """

    def __init__(self, pretrained: GenerativeNetworks, generator: keras.Model, material: str, slice_batch: int) -> None:
        self.pretrained = pretrained
        self.material = material
        grid = pretrained.model.label_grid
        self._fixmat_scan = ConeBeamCT(grid.shape, tuple(grid.spacing_zyx), pretrained.model.scanner,
                                       name="fixmat_scan") if material == "fixmat" else None
        self._slices = SliceSynthesizer(generator, slice_batch)

    def shape_params(self, codes: np.ndarray, shape: str, rng: np.random.Generator) -> np.ndarray:
        """``[n, P]`` shape parameters: ``G_S(codes)`` (``learned``) or uniform draws within the model's
        ranges (``random``)."""
        if shape == "learned":
            return self.pretrained.shape_generator(tf.constant(codes)).numpy()
        if shape != "random":
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")
        bounds, n_modes = self.pretrained.model.bounds, self.pretrained.model.n_modes
        low = bounds.centres(n_modes) - bounds.half_widths(n_modes)
        high = bounds.centres(n_modes) + bounds.half_widths(n_modes)
        return rng.uniform(low, high, size=(len(codes), len(low)))

    def simulate(self, code: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``[Z, Y, X]`` simulated CT of one volume: ``G_M(code)``'s coarse CT upsampled, or Fix-Mat."""
        if self._fixmat_scan is not None:
            return self._fixmat_scan(fix_mat_attenuation(labels[None], self.pretrained.model.scanner)).numpy()[0]
        coarse = self.pretrained.simulator.scan(self.pretrained.material_generator(tf.constant(code[None])))
        return trilinear_upsample(coarse, labels.shape).numpy()[0]

    def enhance(self, simulated: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``[Z, Y, X]``: ``G_GAN`` over every slice of ``(simulated, labels, k)``."""
        return self._slices(condition_volume(simulated, labels).numpy())[..., 0]

    def volume(self, code: np.ndarray, params: np.ndarray, blend_kind: str) -> SyntheticVolume:
        """One labelled volume from its code ``[D]`` and shape parameters ``[P]``."""
        labels = self.pretrained.simulator.renderer.labels(params[None])[0]
        simulated = self.simulate(code, labels)
        image = blend(blend_kind, self.enhance(simulated, labels), simulated, labels > 0)
        return SyntheticVolume(labels.astype(np.uint8), simulated.astype(np.float32), image)
