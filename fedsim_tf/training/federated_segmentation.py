"""Direct-FL (paper Sec. 3, Table 3): the 3D U-Net trained federatedly on every site's labelled volumes, on
the in-process engine (:mod:`fedsim_tf.federation.strategy`, one replica per site).

Who holds what (:class:`DirectFederation`):

* **shared** (mirrored, created in the strategy scope): the U-Net's trainable variables -- the only
  variables the engine aggregates --, its BatchNorm moving statistics when it has them (``cicek``; the
  engine's ``shared_state``, set to the mean of the sites' copies after every round) and the server's
  optimiser: Adam with the segment trainer's learning-rate schedule (nnU-Net's poly decay, or constant)
  over the rounds (``sgd``: plain averaged-gradient descent, for hand-checkable rounds);
* **private**: nothing but each site's volumes, read only by the site's own input pipeline.

A round: every site draws ONE training volume (or patch) of its own, computes the gradient of the
segmentation loss (soft Dice + cross-entropy, :func:`fedsim_tf.losses.segmentation.dice_ce_loss`) and sends
it; the server averages the finite sites' gradients -- an effective batch of one volume per site, 3 in the
paper -- and applies one update; the new weights are everywhere.

Batches: site ``s``'s volume of round ``r`` is :func:`fedsim_tf.training.segmentation.draw_batch` (the
single-site trainer's augmentation and patch sampling) with a NumPy generator seeded by
``(seed, DIRECT_FL_STREAM, fold, s, r)``, so a resumed run sees what an uninterrupted one does. The initial
weights are the single-site trainer's of the fold (:func:`fedsim_tf.training.segmentation.model_seed`).

:func:`train` runs (or resumes) the rounds -- checkpoints, progress with ETA, per-site TensorBoard curves
(:class:`fedsim_tf.training.round_log.RoundLog`) -- and writes the final weights, from which every site
fine-tunes on its own labels (:func:`fedsim_tf.training.segmentation.train_fold` with ``initial_weights``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from fedsim_tf.federation import roles
from fedsim_tf.federation.strategy import FederatedEngine, FederatedRound, site_strategy
from fedsim_tf.losses.segmentation import dice_ce_loss
from fedsim_tf.models.unet3d import build_unet3d
from fedsim_tf.training.augmentation import AugmentationConfig
from fedsim_tf.training.checkpoints import StageCheckpoint
from fedsim_tf.training.progress import Progress
from fedsim_tf.training.round_log import RoundLog
from fedsim_tf.training.schedules import POLY_POWER, PhasedPolyDecay
from fedsim_tf.training.segmentation import Volumes, draw_batch, model_seed, save_weights_atomic
from fedsim_tf.training.segmentation_settings import SegmentationSettings
from fedsim_tf.training.summaries import Summaries

DIRECT_FL_STREAM = 0xD1F1
"""Salt of the random streams of the sites' per-round batches."""
SERVER_OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
FEDERATED_WEIGHTS = "federated.weights.h5"
LOSS = "loss"


class DirectFederation:
    """The shared U-Net, the server and the sites' programs of Direct-FL (module docstring).

    Args:
        settings: the segment trainer's settings (``unet``, ``base_filters``, ``lr``, ``lr_schedule``,
            ``augment``, ``patch_size``, ``seed``; ``batch_size`` is not used: one volume per site per round).
        sites: every site's labelled training volumes, in engine order (site ``i`` on ``devices[i]``), all
            ``[N_i, Z, Y, X]`` on one grid.
        names: the site names, same order.
        fold: the fold (seeds the initial weights and the batches).
        rounds: rounds of the schedule (the poly decay reaches 0 at the last).
        devices: one device per site (:func:`fedsim_tf.federation.devices.configure_site_devices`).
        server_optimizer: ``"adam"`` or ``"sgd"`` (:data:`SERVER_OPTIMIZERS`), both at the schedule's rate.
        cross_device_ops: the server step's reduction (default ``ReductionToOneDevice``).

    Raises:
        ValueError: no site, names that do not match the sites, volumes on different grids, a patch larger
            than the volumes, no round, or an unknown server optimiser.
    """

    def __init__(
        self,
        settings: SegmentationSettings,
        sites: Sequence[Volumes],
        names: Sequence[str],
        fold: int,
        rounds: int,
        devices: Sequence[str],
        server_optimizer: str = "adam",
        cross_device_ops: tf.distribute.CrossDeviceOps | None = None,
    ) -> None:
        if not sites or len(sites) != len(names):
            raise ValueError(f"Direct-FL needs one name per site and at least one site, got {len(sites)} site(s) and "
                             f"names {list(names)}")
        shapes = {tuple(site.images.shape[1:]) for site in sites}
        if len(shapes) != 1:
            raise ValueError(f"Direct-FL sites need volumes on one grid, got {sorted(shapes)}")
        volume_shape = shapes.pop()
        if settings.patch_size > min(volume_shape):
            raise ValueError(f"patch size {settings.patch_size} exceeds the volume shape {volume_shape}")
        if rounds < 1:
            raise ValueError(f"Direct-FL needs at least one round, got {rounds}")
        if server_optimizer not in SERVER_OPTIMIZERS:
            raise ValueError(f"server_optimizer must be one of {SERVER_OPTIMIZERS}, got {server_optimizer!r}")
        self.settings = settings
        self.sites = list(sites)
        self.names = list(names)
        self.fold = fold
        self.rounds = rounds
        self.input_shape = (settings.patch_size,) * 3 if settings.patch_size else volume_shape
        self.augmentation = AugmentationConfig() if settings.augment else None
        power = POLY_POWER if settings.lr_schedule == "poly" else 0.0
        self.schedule = PhasedPolyDecay(settings.lr, (rounds,), power)
        strategy = site_strategy(devices, cross_device_ops)
        with strategy.scope():
            keras.utils.set_random_seed(model_seed(settings.seed, fold))
            self.model = build_unet3d(settings.unet, self.input_shape, settings.base_filters)
            optimizer = keras.optimizers.Adam if server_optimizer == "adam" else keras.optimizers.SGD
            self.server_optimizer = optimizer(learning_rate=self.schedule, name=f"server_{server_optimizer}")
        self.engine = FederatedEngine(strategy, self.model.trainable_variables, self.server_optimizer,
                                      shared_state=self.model.non_trainable_variables)
        self.federated_round: FederatedRound = self.engine.compile_round(
            [roles.Site(name, [roles.Phase(self._losses, shared_loss=LOSS)]) for name in self.names])

    def _losses(self, batch: tuple[tf.Tensor, tf.Tensor]) -> dict[str, tf.Tensor]:
        images, labels = batch
        return {LOSS: dice_ce_loss(labels, self.model(images, training=True))}

    def batch(self, site: int, round_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Site ``site``'s batch of round ``round_index``: ``[1, P, P, P, 1]`` float32 image and
        ``[1, P, P, P]`` uint8 label (``P``: the patch, or the whole ``[Z, Y, X]`` volume)."""
        rng = np.random.default_rng([self.settings.seed, DIRECT_FL_STREAM, self.fold, site, round_index])
        return draw_batch(self.sites[site], 1, rng, self.augmentation, self.settings.patch_size)

    def dataset(self, site: int, start: int) -> tf.data.Dataset:
        """Site ``site``'s batches of rounds ``start .. rounds - 1``, drawn in its own pipeline
        (:meth:`FederatedEngine.site_inputs`)."""
        shape = (1, *self.input_shape)

        def load(round_index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            images, labels = tf.numpy_function(lambda r: self.batch(site, int(r)), [round_index],
                                               (tf.float32, tf.uint8), stateful=False)
            return tf.ensure_shape(images, (*shape, 1)), tf.ensure_shape(labels, shape)

        return tf.data.Dataset.range(start, self.rounds).map(load)

    def trackables(self) -> dict[str, object]:
        """What a checkpoint must hold to resume exactly: the shared U-Net and the server's optimiser."""
        return {"model": self.model, "server_optimizer": self.server_optimizer}


def train(federation: DirectFederation, out_dir: str, log_dir: str, checkpoint_every: int,
          name: str = "direct_fl") -> str:
    """Run (or resume) the federation's rounds and write the final U-Net weights.

    Args:
        federation: the federation (its ``rounds``).
        out_dir: the run's folder: ``checkpoints/`` (one step = one round; the shared U-Net, the server's
            optimiser and the rounds each site was left out of) and, when the rounds end,
            :data:`FEDERATED_WEIGHTS`.
        log_dir: TensorBoard folder: per site ``<site>/loss`` and ``<site>/left_out_rounds``; ``sites_used``
            and ``lr`` per round.
        checkpoint_every: rounds between checkpoints (the last round is always saved).
        name: what the progress lines call the run.

    Returns:
        The path of the final weights (read back when an earlier run finished the rounds).
    """
    tf.config.experimental.enable_op_determinism()
    weights = os.path.join(out_dir, FEDERATED_WEIGHTS)
    summaries = Summaries(log_dir)
    log = RoundLog(federation.names, summaries)
    checkpoint = StageCheckpoint(os.path.join(out_dir, "checkpoints"), **federation.trackables(),
                                 left_out_rounds=log.left_out)
    start = checkpoint.restore_latest()
    total = federation.rounds
    if start >= total and os.path.isfile(weights):
        logging.info("%s: %d rounds finished earlier -> %s", name, total, weights)
        return weights
    logging.info("%s: sites %s on %s (labelled volumes %s; one per site per round), round %d/%d -> %s", name,
                 ", ".join(federation.names), ", ".join(federation.engine.devices),
                 [len(site.ids) for site in federation.sites], start, total, out_dir)
    iterator = federation.engine.site_inputs(federation.dataset, start) if start < total else None
    progress = Progress(name, total, start)
    for round_index in range(start, total):
        result = federation.federated_round(iterator, round_index)
        done = round_index + 1
        means = log.record(done, result, True)
        summaries.scalars(done, {"lr": float(federation.schedule(round_index))})
        if done % checkpoint_every == 0 or done == total:
            checkpoint.save(done)
        progress.update(done, sites=result.count, **means)
    summaries.flush()
    save_weights_atomic(federation.model, weights)
    left_out = dict(zip(federation.names, log.left_out.numpy().tolist()))
    logging.info("%s: done; rounds left out per site %s -> %s", name, left_out, weights)
    return weights
