"""The federated run (paper Sec. 2.3): the single-site schedule -- GLO pre-training, GAN pre-training,
semi-supervised training -- with ``G_S``/``G_M`` shared across the sites
(:class:`fedsim_tf.training.federated.FederatedSimulation`):

1. rounds ``0 .. P-1``: federated GLO pre-training (supervised rounds);
2. every site pre-trains its own GAN locally (:func:`fedsim_tf.training.gan_pretraining.train_site`,
   ``material="learned"``: the coarse CT of the federated ``G_M`` from the site's own codes, with the
   site's ground-truth labels and real slices); nothing is aggregated, since GANs are private;
3. the sites' unlabelled codes are drawn from the Gaussian of all labelled codes; rounds ``P .. P+S-1``
   alternate supervised and unsupervised rounds (each site's frozen GAN).

Checkpoints (``<run>/checkpoints``, one step = one round): the shared generators, the server's optimiser,
every site's codes and code optimisers, and the rounds each site was left out of; each site's GAN has its
own (``<run>/<site>-learned/checkpoints``). A rerun resumes: rounds from the latest checkpoint, GANs from
theirs. When training ends, ``latent_gaussian.npz`` is fitted to every site's codes (labelled, and
unlabelled when there were semi-supervised rounds).

TensorBoard (``log_dir``): per site (``<site>/...``, side by side) the round losses, ``iou`` and
``left_out_rounds``, and ``sites_used`` per round; ``log_dir/gan``: each site's GAN pre-training.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import tensorflow as tf
from absl import logging

from fedsim_tf.models.generative_model import GANRun, GenerativeModel, GeneratorRun
from fedsim_tf.shape.shape_op import ShapeModel
from fedsim_tf.training.checkpoints import StageCheckpoint
from fedsim_tf.training.federated import FederatedSimulation, SiteData
from fedsim_tf.training.federated_settings import FederatedSettings
from fedsim_tf.training.gan_data import SliceSource, learned_ct
from fedsim_tf.training.gan_pretraining import train_site
from fedsim_tf.training.gan_settings import GANSettings
from fedsim_tf.training.glo_settings import GLOSettings
from fedsim_tf.training.latent_gaussian import LatentGaussian
from fedsim_tf.training.progress import Progress
from fedsim_tf.training.round_log import RoundLog
from fedsim_tf.training.semi_run import frozen_gan
from fedsim_tf.training.summaries import Summaries

STAGE = "federated"


def _iou(losses: dict[str, float]) -> dict[str, float]:
    return {"iou": 1.0 - losses["iou_loss"]} if "iou_loss" in losses else {}


def _rounds(simulation: FederatedSimulation, first: int, last: int, checkpoint: StageCheckpoint, log: RoundLog,
            progress: Progress) -> None:
    """Rounds ``first .. last-1`` (each kind's inputs start at ``first``), checkpointed and logged."""
    settings = simulation.settings
    kinds = sorted({settings.supervised(r) for r in range(first, last)})
    inputs = {kind: simulation.engine.site_inputs(simulation.dataset_fn(kind), first) for kind in kinds}
    for round_index in range(first, last):
        kind = settings.supervised(round_index)
        result = simulation.federated_round(kind)(inputs[kind], round_index)
        done = round_index + 1
        means = log.record(done, result, done % settings.log_every == 0 or done == last)
        if done % settings.checkpoint_every == 0 or done in (settings.pretrain_rounds, settings.total_rounds):
            checkpoint.save(done)
        progress.update(done, sites=result.count, **means)


def _pretrain_gans(simulation: FederatedSimulation, gan_runs: Sequence[GANRun], settings: GANSettings, steps: int,
                   perceptual: str, summaries: Summaries) -> None:
    """Step 2 of the module docstring: every site's GAN on its own device, resuming from its checkpoint."""
    label_shape = simulation.model.label_grid.shape
    for index, (site, gan_run) in enumerate(zip(simulation.sites, gan_runs)):
        data = site.data
        with simulation.engine.site_device(index):
            ct = learned_ct(simulation.material_generator, simulation.simulator, site.codes.numpy(), label_shape)
            source = SliceSource(ct, data.targets.labels, data.images, data.targets.case_ids)
            train_site(gan_run, source, settings, steps, perceptual, simulation.settings.checkpoint_every,
                       simulation.settings.log_every, summaries)
        logging.info("federated: site %s's GAN -> %s", site.data.name, gan_run.folder)


def train(
    run: GeneratorRun,
    model: GenerativeModel,
    ssm: ShapeModel,
    sites: Sequence[SiteData],
    gan_runs: Sequence[GANRun],
    glo: GLOSettings,
    settings: FederatedSettings,
    gan: GANSettings,
    perceptual: str,
    log_dir: str,
    devices: Sequence[str],
    cross_device_ops: tf.distribute.CrossDeviceOps | None = None,
) -> FederatedSimulation:
    """Run (or resume) federated simulation.

    Args:
        run: the run's folder (``model.json`` written by the stage).
        model: the generative model; ``ssm`` the shape model it names.
        sites: every site's data, in engine order.
        gan_runs: every site's GAN folder (records written by the stage), in the same order.
        glo: GLO settings (codes, labelled batch, perceptual weight, seed).
        settings: rounds, server optimiser, checkpoint and log intervals.
        gan: the GANs' settings; ``settings.gan_steps`` steps each.
        perceptual: the checked ``--perceptual`` choice (GLO's perceptual term and the GANs' VGG term).
        log_dir: TensorBoard folder.
        devices: one device per site, configured before TensorFlow initialised.
        cross_device_ops: the server step's reduction (tests record it).

    Returns:
        The simulation after the last round.
    """
    tf.config.experimental.enable_op_determinism()
    simulation = FederatedSimulation(model, ssm, sites, glo, settings, perceptual, devices, cross_device_ops)
    summaries = Summaries(log_dir)
    log = RoundLog(simulation.names, summaries, _iou)
    checkpoint = StageCheckpoint(run.checkpoint_dir, **simulation.trackables(), left_out_rounds=log.left_out)
    start = checkpoint.restore_latest()
    pretrain, total = settings.pretrain_rounds, settings.total_rounds
    logging.info("federated: sites %s on %s (labelled %s, unlabelled %s; batches %d / %d per site), round %d/%d "
                 "(%d GLO pre-training, %d semi-supervised) -> %s", ", ".join(simulation.names), ", ".join(devices),
                 [len(s.targets) for s in sites], [len(s.unlabelled_ids) for s in sites], simulation.labelled_batch,
                 simulation.unlabelled_batch, start, total, pretrain, settings.semi_rounds, run.folder)
    progress = Progress(STAGE, total, start=start)
    _rounds(simulation, start, pretrain, checkpoint, log, progress)
    _pretrain_gans(simulation, gan_runs, gan, settings.gan_steps, perceptual, Summaries(os.path.join(log_dir, "gan")))
    if settings.semi_rounds:
        if start <= pretrain:
            simulation.start_unlabelled_codes()
        gans = []
        for index, gan_run in enumerate(gan_runs):
            with simulation.engine.site_device(index):
                gans.append(frozen_gan(gan_run, gan, model.label_grid.shape[-1]))
        simulation.set_gans(gans)
        _rounds(simulation, max(start, pretrain), total, checkpoint, log, progress)
    summaries.flush()
    codes = simulation.all_codes(with_unlabelled=settings.semi_rounds > 0)
    gaussian = LatentGaussian.fit(codes)
    gaussian.save(run.gaussian_path)
    left_out = dict(zip(simulation.names, log.left_out.numpy().tolist()))
    logging.info("federated: done; rounds left out per site %s; latent Gaussian of %d codes (Ledoit-Wolf shrinkage "
                 "%.3f) in %s", left_out, len(codes), gaussian.shrinkage, run.gaussian_path)
    return simulation
