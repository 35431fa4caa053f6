"""The semi-supervised run: restore pre-training (or the semi run's own latest checkpoint), build every
site's frozen GAN, alternate the steps of :class:`fedsim_tf.training.semi.SemiTrainer`, checkpoint, log,
and fit the latent Gaussian to all codes at the end."""

from __future__ import annotations

import numpy as np
from absl import logging

from fedsim_tf.data.case import Case
from fedsim_tf.losses.generation import PerceptualLoss, perceptual_backbone
from fedsim_tf.models.generative_model import GANRun, GenerativeModel, GeneratorRun, load_shape_model
from fedsim_tf.models.generators import build_generators
from fedsim_tf.physics.ct_simulator import simulator_for
from fedsim_tf.training.checkpoints import StageCheckpoint
from fedsim_tf.training.gan import GANTrainer, build_gan_models
from fedsim_tf.training.gan_settings import GANSettings
from fedsim_tf.training.glo import GLOTrainer
from fedsim_tf.training.glo_settings import GLOSettings
from fedsim_tf.training.latent_gaussian import LatentGaussian
from fedsim_tf.training.pretrained import sample_codes
from fedsim_tf.training.pretraining import PERCEPTUAL_IMAGE_SIZE, PERCEPTUAL_SLICES, glo_targets
from fedsim_tf.training.progress import Progress
from fedsim_tf.training.semi import UNLABELLED_STREAM, SemiTrainer, UnlabelledSite
from fedsim_tf.training.semi_settings import SemiSettings
from fedsim_tf.training.summaries import Summaries


def frozen_gan(run: GANRun, settings: GANSettings, image_size: int) -> GANTrainer:
    """A site's GAN (generator and discriminator) at its latest checkpoint, for its losses only."""
    generator, discriminator = build_gan_models(settings, image_size)
    trainer = GANTrainer(generator, discriminator, settings)
    StageCheckpoint(run.checkpoint_dir, **trainer.trackables()).restore_latest()
    return trainer


def train(
    pretrain_run: GeneratorRun,
    semi_run: GeneratorRun,
    model: GenerativeModel,
    labelled: list[tuple[str, Case]],
    images: dict[str, np.ndarray],
    unlabelled: dict[str, list[str]],
    gan_runs: dict[str, GANRun],
    gan_records: dict[str, tuple[GANSettings, int]],
    glo: GLOSettings,
    semi: SemiSettings,
    perceptual: str,
    gaussian_path: str,
    log_dir: str,
) -> SemiTrainer:
    """Run (or resume) the semi-supervised stage.

    Args:
        pretrain_run: where it starts from (generators, codes, optimisers).
        semi_run: its own folder (``model.json`` written by the stage).
        model: the recorded generative model.
        labelled: ``(site, case)`` of every labelled training volume, in pre-training's order.
        images: site -> ``[U, Z, Y, X]`` real CT of its unlabelled training volumes.
        unlabelled: site -> their case ids.
        gan_runs, gan_records: site -> its GAN folder and ``(settings, slice size)``.
        glo: GLO optimisation settings (the supervised steps).
        semi: step schedule.
        perceptual: the checked ``--perceptual`` choice (GLO's perceptual term).
        gaussian_path: pre-training's latent Gaussian (the unlabelled codes start as its draws).
        log_dir: TensorBoard folder.
    """
    shape_generator, material_generator = build_generators(model, glo.seed)
    backbone = perceptual_backbone(perceptual, PERCEPTUAL_IMAGE_SIZE)
    loss = None if backbone.model is None else PerceptualLoss(
        backbone.model, image_size=PERCEPTUAL_IMAGE_SIZE, slices=min(PERCEPTUAL_SLICES, model.coarse_size))
    glo_trainer = GLOTrainer(shape_generator, material_generator, simulator_for(model, load_shape_model(model.ssm)),
                             glo_targets(labelled), glo, loss)
    sites = [UnlabelledSite(name, images[name], tuple(unlabelled[name]), frozen_gan(gan_runs[name], *gan_records[name]))
             for name in images]
    count = sum(len(site.case_ids) for site in sites)
    trainer = SemiTrainer(glo_trainer, sites, sample_codes(gaussian_path, glo.seed, count, UNLABELLED_STREAM), semi)
    checkpoint = StageCheckpoint(semi_run.checkpoint_dir, **trainer.trackables())
    start = checkpoint.restore_latest()
    if checkpoint.latest is None:
        step = StageCheckpoint(pretrain_run.checkpoint_dir, **glo_trainer.trackables()).restore_latest()
        logging.info("semi: starting from the pretrain checkpoint of step %d", step)
    logging.info("semi: %d labelled and %d unlabelled volumes (%s), step %d/%d -> %s", len(labelled), count,
                 ", ".join(f"{s.name}: {len(s.case_ids)}" for s in sites), start, semi.steps, semi_run.folder)
    summaries = Summaries(log_dir)
    progress = Progress("semi", semi.steps, start=start)
    for step in range(start, semi.steps):
        kind, losses = trainer.train_step(step)
        done = step + 1
        if done % semi.log_every == 0 or done == semi.steps:
            summaries.scalars(done, losses, site=kind)
        if done % semi.checkpoint_every == 0 or done == semi.steps:
            checkpoint.save(done)
        progress.update(done, **losses)
    summaries.flush()
    gaussian = LatentGaussian.fit(trainer.all_codes())
    gaussian.save(semi_run.gaussian_path)
    logging.info("semi: latent Gaussian of %d codes (Ledoit-Wolf shrinkage %.3f) in %s", len(trainer.all_codes()),
                 gaussian.shrinkage, semi_run.gaussian_path)
    return trainer
