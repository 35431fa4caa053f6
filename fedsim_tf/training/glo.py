"""GLO pre-training of ``G_S`` and ``G_M`` through the CT simulator (paper Sec. 2.2, "Pre-training").

Every labelled training volume ``i`` owns a free latent code ``z_i`` (a row of
:attr:`GLOTrainer.latents`), learned together with the generators:

* ``G_S(z_i)`` -> shape parameters -> generated binary heart mask ``Y_z^i`` (shape op, gradient
  by finite differences) compared with the real mask by :func:`fedsim_tf.losses.generation.iou_loss`;
* ``G_M(z_i)`` -> material map -> coarse CT ``X~_z^i`` (projector + FDK) compared with the real
  coarse volume ``X~^i`` by the mean squared error plus ``perceptual_weight`` times the VGG loss.

The total loss is ``mean_B(L_IoU) + mean_B(MSE) + perceptual_weight * mean_B(L_perc)``. ``G_S``
and ``G_M`` use Adam; the codes use RMSprop without momentum, so a code that is not in the batch
gets exactly zero update (Adam's momentum would keep moving codes without data). Codes start as
``N(0, I / D)`` draws (norm about 1) and are projected onto the unit ball after every step.

Determinism: the only randomness of a step, its batch, is drawn from ``(seed, step)``, so a run
stopped after ``k`` steps and resumed from its checkpoint takes the same steps as an uninterrupted
one.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from fedsim_tf.losses.generation import PerceptualLoss, iou_loss
from fedsim_tf.physics.ct_simulator import CTSimulator, SimulatedCT
from fedsim_tf.training.glo_settings import GLOSettings


@dataclass(frozen=True)
class GLOTargets:
    """The labelled training volumes of all sites, in a fixed order (row ``i`` <-> code ``z_i``).

    Attributes:
        masks: ``[N, Z, Y, X]`` float32 binary heart masks on the label grid.
        labels: ``[N, Z, Y, X]`` uint8 label indices 0..7 (for the logged images).
        coarse: ``[N, c, c, c]`` float32 coarse CT targets on the ``[-1, 1]`` scale.
        sites: ``N`` site names.
        case_ids: ``N`` case ids.
    """

    masks: np.ndarray
    labels: np.ndarray
    coarse: np.ndarray
    sites: tuple[str, ...]
    case_ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.case_ids)


def project_to_unit_ball(codes: np.ndarray | tf.Tensor) -> tf.Tensor:
    """Rows of ``[N, D]`` codes scaled to norm at most 1 (rows inside the ball are unchanged)."""
    codes = tf.convert_to_tensor(codes, dtype=tf.float32)
    norms = tf.norm(codes, axis=1, keepdims=True)
    return codes / tf.maximum(norms, 1.0)


def initial_codes(seed: int, count: int, latent_dim: int) -> np.ndarray:
    """``[count, latent_dim]`` float32 ``N(0, I / D)`` draws of ``seed``, projected onto the unit ball."""
    rng = np.random.default_rng([seed, 0x6C0])
    codes = rng.standard_normal((count, latent_dim)) / np.sqrt(latent_dim)
    return project_to_unit_ball(codes.astype(np.float32)).numpy()


def batch_indices(seed: int, step: int, count: int, batch_size: int) -> np.ndarray:
    """The volumes of step ``step``: a permutation prefix drawn from ``(seed, step)`` only."""
    return np.random.default_rng([seed, step]).permutation(count)[: min(batch_size, count)]


def glo_losses(
    generated: SimulatedCT,
    real_mask: tf.Tensor,
    real_coarse: tf.Tensor,
    perceptual: PerceptualLoss | None,
    perceptual_weight: float,
) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """The GLO pre-training losses of a batch.

    Args:
        generated: the simulator's output; its ``mask`` ``[B, Z, Y, X]`` and ``ct`` ``[B, c, c, c]``
            (``[-1, 1]`` scale) are used.
        real_mask: ``[B, Z, Y, X]`` real binary heart masks.
        real_coarse: ``[B, c, c, c]`` real coarse CT on the ``[-1, 1]`` scale.
        perceptual: the perceptual loss, or ``None`` when off.
        perceptual_weight: its weight in the total.

    Returns:
        ``(losses, total)``: per-volume ``[B]`` terms ``iou_loss``, ``mse`` (and ``perceptual``), and
        ``mean(iou_loss) + mean(mse) + perceptual_weight * mean(perceptual)``.
    """
    losses = {
        "iou_loss": iou_loss(generated.mask, real_mask),
        "mse": tf.reduce_mean(tf.square(generated.ct - real_coarse), axis=[1, 2, 3]),
    }
    total = tf.reduce_mean(losses["iou_loss"]) + tf.reduce_mean(losses["mse"])
    if perceptual is not None:
        losses["perceptual"] = perceptual(generated.ct, real_coarse)
        total += perceptual_weight * tf.reduce_mean(losses["perceptual"])
    return losses, total


class GLOTrainer:
    """Joint optimisation of ``G_S``, ``G_M`` and the per-volume codes.

    Args:
        shape_generator: ``z [B, D] -> [B, P]`` shape parameters.
        material_generator: ``z [B, D] -> [B, c, c, c]`` attenuation (/cm).
        simulator: the CT simulator in learned mode.
        targets: the training volumes.
        settings: optimisation settings.
        perceptual: the perceptual loss, or ``None`` when off.
    """

    def __init__(
        self,
        shape_generator: keras.Model,
        material_generator: keras.Model,
        simulator: CTSimulator,
        targets: GLOTargets,
        settings: GLOSettings,
        perceptual: PerceptualLoss | None,
    ) -> None:
        self.shape_generator = shape_generator
        self.material_generator = material_generator
        self.simulator = simulator
        self.targets = targets
        self.settings = settings
        self.perceptual = perceptual
        latent_dim = int(shape_generator.inputs[0].shape[-1])
        self.latents = tf.Variable(initial_codes(settings.seed, len(targets), latent_dim), name="latents")
        self.shape_optimizer = keras.optimizers.Adam(settings.lr_shape, name="shape_adam")
        self.material_optimizer = keras.optimizers.Adam(settings.lr_material, name="material_adam")
        self.latent_optimizer = keras.optimizers.RMSprop(settings.lr_latent, momentum=0.0, name="latent_rmsprop")
        # Build every optimiser now so that a checkpoint restores into existing slots.
        self.shape_optimizer.build(shape_generator.trainable_variables)
        self.material_optimizer.build(material_generator.trainable_variables)
        self.latent_optimizer.build([self.latents])

    def trackables(self) -> dict[str, object]:
        """Everything a checkpoint must hold to resume exactly."""
        return {
            "shape_generator": self.shape_generator,
            "material_generator": self.material_generator,
            "latents": self.latents,
            "shape_optimizer": self.shape_optimizer,
            "material_optimizer": self.material_optimizer,
            "latent_optimizer": self.latent_optimizer,
        }

    def learning_rates(self) -> dict[str, float]:
        """Current learning rates, named for TensorBoard."""
        return {
            "lr_shape": float(keras.ops.convert_to_numpy(self.shape_optimizer.learning_rate)),
            "lr_material": float(keras.ops.convert_to_numpy(self.material_optimizer.learning_rate)),
            "lr_latent": float(keras.ops.convert_to_numpy(self.latent_optimizer.learning_rate)),
        }

    def render(self, codes: tf.Tensor) -> SimulatedCT:
        """Generate labels, masks and coarse CT from ``[B, D]`` codes (no gradient recorded)."""
        return self.simulator(self.shape_generator(codes), self.material_generator(codes))

    def _losses(self, indices: np.ndarray, codes: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        return glo_losses(self.render(codes), tf.constant(self.targets.masks[indices]),
                          tf.constant(self.targets.coarse[indices]), self.perceptual, self.settings.perceptual_weight)

    def train_step(self, step: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One optimisation step on the batch of ``step``.

        Returns:
            ``(indices, losses)``: the batch's volume indices ``[B]`` and per-volume losses
            (``iou_loss``, ``mse``, ``perceptual`` when on; each ``[B]``), before the update.
        """
        indices = batch_indices(self.settings.seed, step, len(self.targets), self.settings.batch_size)
        shape_vars = self.shape_generator.trainable_variables
        material_vars = self.material_generator.trainable_variables
        with tf.GradientTape() as tape:
            codes = tf.gather(self.latents, indices)
            losses, total = self._losses(indices, codes)
        grads = tape.gradient(total, [shape_vars, material_vars, self.latents])
        self.shape_optimizer.apply_gradients(zip(grads[0], shape_vars))
        self.material_optimizer.apply_gradients(zip(grads[1], material_vars))
        self.latent_optimizer.apply_gradients([(tf.convert_to_tensor(grads[2]), self.latents)])
        self.latents.assign(project_to_unit_ball(self.latents))
        return indices, {name: value.numpy() for name, value in losses.items()}

    def evaluate(self) -> dict[str, np.ndarray]:
        """Per-volume ``iou_loss`` and ``mse`` ``[N]`` of every training volume at the current codes."""
        losses, _ = self._losses(np.arange(len(self.targets)), tf.convert_to_tensor(self.latents))
        return {name: value.numpy() for name, value in losses.items()}
