"""A finished pre-training run, restored: ``G_S``, ``G_M`` and the CT simulator at the latest checkpoint,
and new latent codes drawn from the fitted Gaussian."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from absl import logging

from fedsim_tf.errors import UserInputError
from fedsim_tf.models.generative_model import GenerativeModel, GeneratorRun, load_shape_model
from fedsim_tf.models.generators import build_generators
from fedsim_tf.physics.ct_simulator import SimulatedCT, simulator_for
from fedsim_tf.training.checkpoints import StageCheckpoint
from fedsim_tf.training.glo import project_to_unit_ball
from fedsim_tf.training.latent_gaussian import LatentGaussian

CODE_STREAM = 0x5A
"""Salt of the random stream that draws new codes (``(seed, CODE_STREAM)``)."""


class PretrainedModel:
    """The generators, learned codes and simulator of a pre-training run at its latest checkpoint.

    Args:
        run: the run's folder.
        model: its recorded model (:meth:`GeneratorRun.load_model`).
        mode: simulator mode, ``"learned"`` (coarse CT from ``G_M``) or ``"fixmat"`` (the fixed
            attenuation atlas rendered on the label grid).

    Raises:
        UserInputError: the run has no checkpoint.
    """

    def __init__(self, run: GeneratorRun, model: GenerativeModel, mode: str = "learned") -> None:
        self.model = model
        self.training_set = run.training_set
        self.shape_generator, self.material_generator = build_generators(model, seed=0)
        self.simulator = simulator_for(model, load_shape_model(model.ssm), mode)
        count = sum(len(ids) for ids in run.training_set.labelled.values())
        self.latents = tf.Variable(tf.zeros([count, model.latent_dim]), name="latents")
        checkpoint = StageCheckpoint(run.checkpoint_dir, shape_generator=self.shape_generator,
                                     material_generator=self.material_generator, latents=self.latents)
        if checkpoint.latest is None:
            raise UserInputError(f"{run.checkpoint_dir}: no pretrain checkpoint; run --stage=pretrain first")
        self.step = checkpoint.restore_latest()

    def codes(self, site: str) -> np.ndarray:
        """``[n, D]`` learned codes of the site's labelled training volumes, in the training set's order
        (the pooled rows of pre-training: sites in order, each site's cases in order)."""
        start = 0
        for name, ids in self.training_set.labelled.items():
            if name == site:
                return self.latents.numpy()[start : start + len(ids)]
            start += len(ids)
        raise ValueError(f"site {site!r} is not in the pre-training set {self.training_set.name}")

    def render(self, codes: np.ndarray | tf.Tensor) -> SimulatedCT:
        """``[B, D]`` codes -> labels ``[B, Z, Y, X]``, mask and CT (coarse, or label-grid with Fix-Mat)."""
        codes = tf.convert_to_tensor(codes, tf.float32)
        return self.simulator(self.shape_generator(codes), self.material_generator(codes))


def sample_codes(gaussian_path: str, seed: int, count: int, stream: int = CODE_STREAM) -> np.ndarray:
    """``[count, D]`` float32 codes drawn from the fitted Gaussian with ``(seed, stream)`` and projected
    onto the unit ball (the region the generators were trained on)."""
    gaussian = LatentGaussian.load(gaussian_path)
    if not np.any(gaussian.cov):
        logging.warning("%s: the latent Gaussian has zero covariance (pre-trained on a single volume), so every "
                        "sample is the same heart", gaussian_path)
    draws = gaussian.sample(np.random.default_rng([seed, stream]), count).astype(np.float32)
    return project_to_unit_ball(draws).numpy()
