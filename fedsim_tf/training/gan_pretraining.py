"""GAN pre-training of one site (paper Sec. 2.2): ``G_GAN`` learns to turn the simulator's CT and the
ground-truth label slice into the site's real CT slice, with GauGAN's losses
(:class:`fedsim_tf.training.gan.GANTrainer`).

The run resumes from its latest checkpoint. Determinism: the slices of step ``t`` are drawn from a
NumPy generator seeded with ``(seed, site, t)``, so a resumed run sees the same batches as an
uninterrupted one. TensorBoard, per site: every loss term, and a strip ``label | simulated CT |
generated | real`` of a fixed validation slice.
"""

from __future__ import annotations

import zlib

import numpy as np
from absl import logging

from fedsim_tf.losses.generation import perceptual_backbone
from fedsim_tf.models.generative_model import GANRun
from fedsim_tf.training.checkpoints import StageCheckpoint
from fedsim_tf.training.gan import GANTrainer, build_gan_models
from fedsim_tf.training.gan_data import SliceSource
from fedsim_tf.training.gan_settings import GANSettings
from fedsim_tf.training.progress import Progress
from fedsim_tf.training.summaries import Summaries

def step_rng(seed: int, site: str, step: int) -> np.random.Generator:
    """The random stream of one training step of one site's GAN."""
    return np.random.default_rng([seed, zlib.crc32(site.encode()), step])


def preview_strip(source: SliceSource, trainer: GANTrainer) -> np.ndarray:
    """``[1, Y, 4 X, 1]`` image in [0, 1]: label | simulated CT | generated | real, of the middle slice of
    the source's first volume."""
    k = source.depth // 2
    condition, real = source.slices(np.array([0]), np.array([k]))
    fake = trainer.generator(condition, training=False).numpy()[0, ..., 0]
    panels = [source.labels[0, k] / 7.0, (source.ct[0, k] + 1.0) / 2.0, (fake + 1.0) / 2.0,
              (real.numpy()[0, ..., 0] + 1.0) / 2.0]
    return np.clip(np.concatenate(panels, axis=1), 0.0, 1.0)[None, ..., None].astype(np.float32)


def train_site(
    run: GANRun,
    source: SliceSource,
    settings: GANSettings,
    steps: int,
    perceptual: str,
    checkpoint_every: int,
    log_every: int,
    summaries: Summaries,
) -> GANTrainer:
    """Train (or resume) the site's GAN for ``steps`` steps of ``settings.batch_size`` slices.

    Args:
        run: the GAN's folder (its record already written by the stage).
        source: the site's training slices.
        settings: networks and optimisation.
        steps: total steps of the run.
        perceptual: the checked ``--perceptual`` choice (the VGG term).
        checkpoint_every: steps between checkpoints.
        log_every: steps between TensorBoard scalars (the preview strip: 10x rarer).
        summaries: the stage's TensorBoard writer (tags are prefixed with the site).

    Returns:
        The trainer after the last step.
    """
    image_size = int(source.ct.shape[-1])
    generator, discriminator = build_gan_models(settings, image_size)
    trainer = GANTrainer(generator, discriminator, settings, perceptual_backbone(perceptual, image_size))
    logging.info("pretrain_gan %s: %s", run.site, trainer.describe_losses())
    checkpoint = StageCheckpoint(run.checkpoint_dir, **trainer.trackables())
    start = checkpoint.restore_latest()
    logging.info("pretrain_gan %s: %d %s volumes, slices %s, step %d/%d -> %s", run.site, len(source.case_ids),
                 run.material, source.ct.shape[1:], start, steps, run.folder)
    progress = Progress(f"pretrain_gan {run.site}", steps, start=start)
    for step in range(start, steps):
        condition, real = source.draw(step_rng(settings.seed, run.site, step), settings.batch_size)
        losses = trainer.train_step(condition, real)
        done = step + 1
        if done % log_every == 0 or done == steps:
            summaries.scalars(done, losses, site=run.site)
        if done % (10 * log_every) == 0 or done == steps:
            summaries.images(done, {"label|simulated|generated|real": preview_strip(source, trainer)}, site=run.site)
        if done % checkpoint_every == 0 or done == steps:
            checkpoint.save(done)
        progress.update(done, **losses)
    summaries.flush()
    return trainer
