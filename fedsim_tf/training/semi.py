"""Semi-supervised training of ``G_S`` and ``G_M`` (paper Sec. 2.2, "Semi-Supervised Learning").

Supervised and unsupervised steps alternate (:meth:`SemiTrainer.train_step`):

* **supervised** (even steps): a GLO step on the labelled training volumes, exactly as in
  pre-training (:meth:`fedsim_tf.training.glo.GLOTrainer.train_step`);
* **unsupervised** (odd steps): every unlabelled training volume ``u`` owns a code ``z_u``, first drawn
  from the Gaussian fitted to the pre-trained codes and then learned. For a batch of them (one site per
  step, in turn) the full generative process runs -- ``G_S(z_u)`` -> shape -> one-hot label map
  (finite-difference gradient, :func:`fedsim_tf.shape.shape_op.render_one_hot`), ``G_M(z_u)`` -> coarse
  CT -> trilinear upsampling -> slice ``k`` (random) -> the site's ``G_GAN`` -- and the GAN's generator
  losses against the volume's real slice ``k`` update ``G_S``, ``G_M`` and the unlabelled codes. The
  **discriminator is frozen** (the paper's choice, for stability); the GAN's generator is frozen too (it
  was trained to respect the input labels in GAN pre-training; here only shape and material adapt).

The unlabelled codes use RMSprop without momentum and are projected onto the unit ball, like GLO's.
Determinism: the batch of step ``t`` comes from ``(seed, t)`` only, so a resumed run takes the same steps
as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from fedsim_tf.models.conditioning import condition_from_one_hot, trilinear_upsample
from fedsim_tf.physics.ct_simulator import CTSimulator
from fedsim_tf.shape.shape_op import render_one_hot
from fedsim_tf.training.gan import GANTrainer
from fedsim_tf.training.glo import GLOTrainer, project_to_unit_ball
from fedsim_tf.training.semi_settings import SemiSettings

UNLABELLED_STREAM = 0x5E31
"""Salt of the random streams of the unsupervised steps."""


@dataclass(frozen=True)
class UnlabelledSite:
    """One site's unlabelled training volumes and its (frozen) GAN.

    Attributes:
        name: site name.
        images: ``[U, Z, Y, X]`` float32 real CT on the ``[-1, 1]`` scale, on the label grid's shape.
        case_ids: ``U`` case ids.
        gan: the site's GAN (only its generator losses are used; no weight of it changes).
    """

    name: str
    images: np.ndarray
    case_ids: tuple[str, ...]
    gan: GANTrainer


def frozen_gan_losses(
    shape_generator: keras.Model,
    material_generator: keras.Model,
    simulator: CTSimulator,
    gan: GANTrainer,
    codes: tf.Tensor,
    ks: tf.Tensor,
    real: tf.Tensor,
) -> dict[str, tf.Tensor]:
    """The unsupervised losses: the full generative process from ``codes`` to slices ``ks``, judged by a
    site's frozen GAN against the real slices (no weight of the GAN changes; gradients reach ``G_S``
    through the one-hot label maps' finite differences, ``G_M`` through the simulator, and the codes).

    Args:
        shape_generator, material_generator: ``G_S`` and ``G_M``.
        simulator: the CT simulator (learned mode; its renderer and coarse scan are used).
        gan: the site's GAN.
        codes: ``[B, D]`` latent codes of unlabelled volumes.
        ks: ``[B]`` int32 slice indices (axial, ``Z``).
        real: ``[B, Y, X, 1]`` the volumes' real slices ``ks`` on the ``[-1, 1]`` scale.

    Returns:
        :meth:`GANTrainer.generator_losses` (``g_total`` and its terms).
    """
    one_hot = render_one_hot(shape_generator(codes), simulator.renderer)  # [B, Z, Y, X, 8]
    coarse = simulator.scan(material_generator(codes))
    ct = trilinear_upsample(coarse, one_hot.shape[1:4])  # [B, Z, Y, X]
    picks = tf.stack([tf.range(tf.shape(ks)[0]), ks], axis=1)
    condition = condition_from_one_hot(tf.gather_nd(ct, picks), tf.gather_nd(one_hot, picks), ks, ct.shape[1])
    return gan.generator_losses(condition, real, training=False)


class SemiTrainer:
    """Alternating supervised (GLO) and unsupervised (frozen-GAN) steps.

    Args:
        glo: the GLO trainer of the labelled volumes (its generators, codes and optimisers continue
            pre-training's).
        sites: the sites with unlabelled volumes (at least one volume in all).
        initial_codes: ``[U, D]`` starting codes of the unlabelled volumes, sites in order.
        settings: step schedule.
    """

    def __init__(self, glo: GLOTrainer, sites: list[UnlabelledSite], initial_codes: np.ndarray,
                 settings: SemiSettings) -> None:
        counts = [len(site.case_ids) for site in sites]
        if sum(counts) != len(initial_codes) or not sum(counts):
            raise ValueError(f"SemiTrainer: {len(initial_codes)} codes for {sum(counts)} unlabelled volumes")
        self.glo = glo
        self.sites = [site for site in sites if len(site.case_ids)]
        self.settings = settings
        self.starts = dict(zip((s.name for s in sites), np.cumsum([0] + counts[:-1]).tolist()))
        self.codes = tf.Variable(project_to_unit_ball(initial_codes), name="unlabelled_codes")
        self.code_optimizer = keras.optimizers.RMSprop(glo.settings.lr_latent, momentum=0.0, name="unlabelled_rmsprop")
        self.code_optimizer.build([self.codes])

    def trackables(self) -> dict[str, object]:
        """Everything a checkpoint must hold to resume exactly (the GANs are frozen and not included)."""
        return {**self.glo.trackables(), "unlabelled_codes": self.codes, "unlabelled_optimizer": self.code_optimizer}

    def _batch(self, step: int) -> tuple[UnlabelledSite, np.ndarray, np.ndarray]:
        """Site, volume indices (within the site) and slice indices of unsupervised step ``step``."""
        site = self.sites[step % len(self.sites)]
        rng = np.random.default_rng([self.glo.settings.seed, UNLABELLED_STREAM, step])
        count = min(self.settings.unlabelled_batch, len(site.case_ids))
        return site, rng.permutation(len(site.case_ids))[:count], rng.integers(site.images.shape[1], size=count)

    def unsupervised_losses(self, site: UnlabelledSite, rows: tf.Tensor, volumes: np.ndarray,
                            ks: np.ndarray) -> dict[str, tf.Tensor]:
        """The frozen GAN's generator losses of the generated slices ``ks`` of unlabelled codes ``rows``.

        Args:
            site: the site (its GAN and real volumes).
            rows: ``[B]`` rows of :attr:`codes`.
            volumes: ``[B]`` indices of the volumes within the site.
            ks: ``[B]`` slice indices.
        """
        real = tf.constant(site.images[volumes, ks][..., None], tf.float32)
        return frozen_gan_losses(self.glo.shape_generator, self.glo.material_generator, self.glo.simulator, site.gan,
                                 tf.gather(self.codes, rows), tf.constant(ks, tf.int32), real)

    def unsupervised_step(self, step: int) -> tuple[str, dict[str, float]]:
        """One unsupervised step; returns the site and its losses (before the update)."""
        site, volumes, ks = self._batch(step)
        rows = tf.constant(self.starts[site.name] + volumes, tf.int32)
        shape_vars = self.glo.shape_generator.trainable_variables
        material_vars = self.glo.material_generator.trainable_variables
        with tf.GradientTape() as tape:
            losses = self.unsupervised_losses(site, rows, volumes, ks)
        grads = tape.gradient(losses["g_total"], [shape_vars, material_vars, self.codes])
        self.glo.shape_optimizer.apply_gradients(zip(grads[0], shape_vars))
        self.glo.material_optimizer.apply_gradients(zip(grads[1], material_vars))
        self.code_optimizer.apply_gradients([(tf.convert_to_tensor(grads[2]), self.codes)])
        self.codes.assign(project_to_unit_ball(self.codes))
        return site.name, {name: float(value) for name, value in losses.items()}

    def train_step(self, step: int) -> tuple[str, dict[str, float]]:
        """Step ``step``: supervised when even, unsupervised when odd.

        Returns:
            ``("supervised" | site name, mean losses)``.
        """
        if step % 2 == 0:
            _, losses = self.glo.train_step(step // 2)
            return "supervised", {name: float(np.mean(value)) for name, value in losses.items()}
        return self.unsupervised_step(step // 2)

    def all_codes(self) -> np.ndarray:
        """``[N + U, D]``: the labelled codes then the unlabelled ones (for the final Gaussian)."""
        return np.concatenate([self.glo.latents.numpy(), self.codes.numpy()])
