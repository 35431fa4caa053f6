"""The GLO pre-training run (paper Sec. 2.2, "Pre-training"): build the generators from the recorded
model, optimise them with the codes (:class:`fedsim_tf.training.glo.GLOTrainer`), checkpoint, log and
fit the latent Gaussian.

Outputs go to the run's folder (:class:`fedsim_tf.models.generative_model.GeneratorRun`):
``checkpoints/`` (a rerun resumes from the latest) and ``latent_gaussian.npz`` (Ledoit-Wolf Gaussian
of the codes, written when training ends). TensorBoard: ``<log_dir>`` (losses, IoU, learning rates,
middle slices; per site).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from absl import logging

from fedsim_tf.data.case import Case
from fedsim_tf.losses.generation import PerceptualLoss, perceptual_backbone
from fedsim_tf.models.generative_model import GenerativeModel, GeneratorRun
from fedsim_tf.models.generators import build_generators
from fedsim_tf.physics.ct_simulator import simulator_for
from fedsim_tf.shape.shape_op import ShapeModel
from fedsim_tf.training.checkpoints import StageCheckpoint
from fedsim_tf.training.glo import GLOTargets, GLOTrainer
from fedsim_tf.training.glo_settings import GLOSettings
from fedsim_tf.training.latent_gaussian import LatentGaussian
from fedsim_tf.training.progress import Progress
from fedsim_tf.training.summaries import Summaries, middle_slice_image

STAGE = "pretrain"
PERCEPTUAL_IMAGE_SIZE = 32
PERCEPTUAL_SLICES = 4


def glo_targets(cases: list[tuple[str, Case]]) -> GLOTargets:
    """The labelled training volumes ``(site name, case)`` in a fixed order (row ``i`` <-> code ``z_i``)."""
    return GLOTargets(
        masks=np.stack([np.asarray(case.label > 0, dtype=np.float32) for _, case in cases]),
        labels=np.stack([np.asarray(case.label, dtype=np.uint8) for _, case in cases]),
        coarse=np.stack([np.asarray(case.coarse, dtype=np.float32) for _, case in cases]),
        sites=tuple(site for site, _ in cases),
        case_ids=tuple(case.case_id for _, case in cases),
    )


def _log_images(trainer: GLOTrainer, summaries: Summaries, step: int) -> None:
    targets = trainer.targets
    for site in dict.fromkeys(targets.sites):
        index = targets.sites.index(site)
        generated = trainer.render(tf.gather(trainer.latents, [index]))
        summaries.images(
            step,
            {
                "labels/generated": middle_slice_image(generated.labels[0].numpy(), (0, 7)),
                "labels/real": middle_slice_image(targets.labels[index], (0, 7)),
                "coarse_ct/generated": middle_slice_image(generated.ct[0].numpy(), (-1, 1)),
                "coarse_ct/real": middle_slice_image(targets.coarse[index], (-1, 1)),
            },
            site=site,
        )


def _log_scalars(
    trainer: GLOTrainer, summaries: Summaries, step: int, indices: np.ndarray, losses: dict[str, np.ndarray]
) -> None:
    sites = np.array(trainer.targets.sites)[indices]
    per_site = {None: np.ones(len(indices), dtype=bool)} | {s: sites == s for s in dict.fromkeys(sites)}
    for site, keep in per_site.items():
        values = {name: float(np.mean(value[keep])) for name, value in losses.items()}
        values["iou"] = 1.0 - values["iou_loss"]
        summaries.scalars(step, values | (trainer.learning_rates() if site is None else {}), site=site)


def train(
    run: GeneratorRun,
    model: GenerativeModel,
    targets: GLOTargets,
    ssm: ShapeModel,
    settings: GLOSettings,
    perceptual: str,
    log_dir: str,
) -> GLOTrainer:
    """Pre-train (resuming from the run's latest checkpoint) and fit the code Gaussian.

    Args:
        run: the run's folder (``model.json`` already written by the stage).
        model: the generative model to train (its label grid matches ``targets``).
        targets: the pooled labelled training volumes.
        ssm: the shape model ``model.ssm`` names.
        settings: optimisation and loop settings.
        perceptual: the checked ``--perceptual`` choice.
        log_dir: TensorBoard folder.

    Returns:
        The trainer after the last step.
    """
    if targets.coarse.shape[1:] != model.coarse_grid.shape or targets.masks.shape[1:] != model.label_grid.shape:
        raise ValueError(f"targets {targets.masks.shape[1:]} / {targets.coarse.shape[1:]} do not match the model's "
                         f"grids {model.label_grid.shape} / {model.coarse_grid.shape}")
    tf.config.experimental.enable_op_determinism()
    shape_generator, material_generator = build_generators(model, settings.seed)
    backbone = perceptual_backbone(perceptual, PERCEPTUAL_IMAGE_SIZE)
    logging.info("%s", backbone.description)
    loss = None if backbone.model is None else PerceptualLoss(
        backbone.model, image_size=PERCEPTUAL_IMAGE_SIZE, slices=min(PERCEPTUAL_SLICES, model.coarse_size))
    trainer = GLOTrainer(shape_generator, material_generator, simulator_for(model, ssm), targets, settings, loss)
    checkpoint = StageCheckpoint(run.checkpoint_dir, **trainer.trackables())
    start = checkpoint.restore_latest()
    logging.info(
        "pretrain: %d labelled training volumes from %d site(s), label grid %s, coarse %d^3, step %d/%d -> %s",
        len(targets), len(set(targets.sites)), model.label_grid.shape, model.coarse_size, start, settings.steps,
        run.folder,
    )
    summaries = Summaries(log_dir)
    progress = Progress(STAGE, settings.steps, start=start)
    for step in range(start, settings.steps):
        indices, losses = trainer.train_step(step)
        done = step + 1
        if done % settings.log_every == 0 or done == settings.steps:
            _log_scalars(trainer, summaries, done, indices, losses)
        if done % (10 * settings.log_every) == 0 or done == settings.steps:
            _log_images(trainer, summaries, done)
        if done % settings.checkpoint_every == 0 or done == settings.steps:
            checkpoint.save(done)
        progress.update(done, **{name: float(np.mean(value)) for name, value in losses.items()})
    summaries.flush()
    final = trainer.evaluate()
    sites = np.array(targets.sites)
    per_site = ", ".join(f"{site} {1.0 - float(np.mean(final['iou_loss'][sites == site])):.3f}"
                         for site in dict.fromkeys(targets.sites))
    logging.info(
        "pretrain: over all %d training volumes: mean IoU %.3f (per site: %s), coarse-CT MSE %.4f",
        len(targets), 1.0 - float(np.mean(final["iou_loss"])), per_site, float(np.mean(final["mse"])),
    )
    if len(targets) < 2:
        logging.warning("pretrain: only %d labelled training volume: the latent Gaussian has zero covariance, so "
                        "every sample will be the same heart; use more labelled volumes (--label_size)", len(targets))
    gaussian = LatentGaussian.fit(trainer.latents.numpy())
    gaussian.save(run.gaussian_path)
    logging.info("pretrain: done; latent Gaussian (Ledoit-Wolf shrinkage %.3f) in %s", gaussian.shrinkage,
                 run.gaussian_path)
    return trainer
