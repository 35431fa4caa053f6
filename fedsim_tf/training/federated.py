"""Federated simulation (paper Sec. 2.3, Fig. 2): ``G_S`` and ``G_M`` learned across sites that keep their
volumes, codes and GANs, on the in-process engine (:mod:`fedsim_tf.federation.strategy`, one replica per
site).

Who holds what (:class:`FederatedSimulation`):

* **shared** (mirrored, created in the strategy scope): the trainable variables of ``G_S`` and ``G_M``
  -- the only variables the engine aggregates -- and the **server's optimiser** of them (``adam`` at
  ``server_lr``, default 1e-3 = GLO's ``--lr_shape``/``--lr_material`` defaults; one optimiser for both
  generators, since the server applies one update per round; ``sgd`` for hand-checkable rounds);
* **private, per site** (plain variables on the site's device): the codes of its labelled volumes
  (RMSprop without momentum at GLO's ``lr_latent``, projected onto the unit ball after each step,
  exactly as :class:`fedsim_tf.training.glo.GLOTrainer`), the codes of its unlabelled volumes (the same
  optimiser kind, as :class:`fedsim_tf.training.semi.SemiTrainer`), their optimisers, and its GAN
  (``G_GAN`` and discriminator, frozen during the rounds); its volumes stay on its device as constants.

Two kinds of rounds (:meth:`FederatedSimulation.round_sites`), each one step per site and one server
update of the mean of the finite sites' gradients (the engine drops a site whose loss or gradient is
not finite):

* **supervised**: a GLO step on a batch of the site's labelled volumes (losses of
  :func:`fedsim_tf.training.glo.glo_losses`; the gradient w.r.t. ``G_S``/``G_M`` goes to the server,
  the codes' is applied on the site);
* **unsupervised**: the full generative process from a batch of the site's unlabelled codes to random
  slices, judged by the site's frozen GAN (:func:`fedsim_tf.training.semi.frozen_gan_losses`).

Batches are drawn per site and round from ``(seed, stream, site index, round)`` only
(:meth:`FederatedSimulation.dataset_fn`), so a resumed run sees the batches an uninterrupted one does.
Every site's batch has the same size (the engine's per-replica inputs share one element spec): the
smallest of the requested size and the sites' volume counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from fedsim_tf.federation import roles
from fedsim_tf.federation.strategy import FederatedEngine, FederatedRound, site_strategy
from fedsim_tf.losses.generation import PerceptualLoss, perceptual_backbone
from fedsim_tf.models.generative_model import GenerativeModel
from fedsim_tf.models.generators import build_generators
from fedsim_tf.physics.ct_simulator import simulator_for
from fedsim_tf.shape.shape_op import ShapeModel
from fedsim_tf.training.federated_settings import FederatedSettings
from fedsim_tf.training.gan import GANTrainer
from fedsim_tf.training.glo import GLOTargets, glo_losses, initial_codes, project_to_unit_ball
from fedsim_tf.training.glo_settings import GLOSettings
from fedsim_tf.training.latent_gaussian import LatentGaussian
from fedsim_tf.training.pretraining import PERCEPTUAL_IMAGE_SIZE, PERCEPTUAL_SLICES
from fedsim_tf.training.semi import UNLABELLED_STREAM, frozen_gan_losses

SUPERVISED_STREAM = 0xFED5
"""Salt of the random streams of the supervised rounds' batches."""


@dataclass(frozen=True)
class SiteData:
    """What one site trains on; it never leaves the site.

    Attributes:
        targets: its labelled training volumes (masks, labels, coarse CT; ``sites`` all its name).
        images: ``[N, Z, Y, X]`` float32 real CT of the labelled volumes (``[-1, 1]``; the GAN's targets).
        unlabelled: ``[U, Z, Y, X]`` float32 real CT of its unlabelled training volumes (``U`` may be 0).
        unlabelled_ids: ``U`` case ids.
    """

    targets: GLOTargets
    images: np.ndarray
    unlabelled: np.ndarray
    unlabelled_ids: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.targets.sites[0]


def site_batch(data: SiteData, seed: int, site: int, round_index: int, supervised: bool, labelled_batch: int,
               unlabelled_batch: int) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Site ``site``'s batch of a round, drawn from ``(seed, stream, site, round)`` only: ``[b]`` int32
    labelled-volume indices (supervised, ``b = labelled_batch``), or ``([b], [b])`` int32 unlabelled-volume
    indices and slice indices (unsupervised, ``b = unlabelled_batch``).

    Args:
        data: the site's volumes.
        seed: the run's seed (GLO ``seed``).
        site: the site's index in the federation.
        round_index: the round (0-based over the whole schedule).
        supervised: the round's kind.
        labelled_batch: the federation's labelled batch size; ``unlabelled_batch`` its unlabelled one.
    """
    if supervised:
        rng = np.random.default_rng([seed, SUPERVISED_STREAM, site, round_index])
        return rng.permutation(len(data.targets))[:labelled_batch].astype(np.int32)
    rng = np.random.default_rng([seed, UNLABELLED_STREAM, site, round_index])
    volumes = rng.permutation(len(data.unlabelled_ids))[:unlabelled_batch].astype(np.int32)
    return volumes, rng.integers(data.unlabelled.shape[1], size=len(volumes)).astype(np.int32)


def unlabelled_start_codes(gaussian: LatentGaussian, seed: int, site: int, count: int) -> np.ndarray:
    """``[count, D]`` float32 first unlabelled codes of site ``site`` (its index in the federation): draws
    from ``gaussian`` (stream ``(seed, UNLABELLED_STREAM, site)``) projected onto the unit ball."""
    rng = np.random.default_rng([seed, UNLABELLED_STREAM, site])
    return project_to_unit_ball(gaussian.sample(rng, count).astype(np.float32)).numpy()


class SiteState:
    """A site's private variables and optimisers, created on its device.

    Args:
        data: the site's volumes (kept as constants on the device).
        codes: ``[N, D]`` initial codes of its labelled volumes.
        unlabelled_codes: ``[U, D]`` initial codes of its unlabelled volumes.
        lr_latent: RMSprop learning rate of both code sets.
    """

    def __init__(self, data: SiteData, codes: np.ndarray, unlabelled_codes: np.ndarray, lr_latent: float) -> None:
        self.data = data
        self.masks = tf.constant(data.targets.masks)
        self.coarse = tf.constant(data.targets.coarse)
        self.unlabelled_images = tf.constant(data.unlabelled)
        self.codes = tf.Variable(codes, name=f"{data.name}_codes")
        self.unlabelled_codes = tf.Variable(unlabelled_codes, name=f"{data.name}_unlabelled_codes")
        self.code_optimizer = keras.optimizers.RMSprop(lr_latent, momentum=0.0, name=f"{data.name}_code_rmsprop")
        self.unlabelled_optimizer = keras.optimizers.RMSprop(lr_latent, momentum=0.0,
                                                             name=f"{data.name}_unlabelled_rmsprop")
        self.code_optimizer.build([self.codes])
        self.unlabelled_optimizer.build([self.unlabelled_codes])
        self.gan: GANTrainer | None = None

    def trackables(self) -> tf.train.Checkpoint:
        """The site's part of the stage checkpoint (its GAN has its own folder)."""
        return tf.train.Checkpoint(codes=self.codes, code_optimizer=self.code_optimizer,
                                   unlabelled_codes=self.unlabelled_codes,
                                   unlabelled_optimizer=self.unlabelled_optimizer)


def make_server_optimizer(settings: FederatedSettings) -> keras.optimizers.Optimizer:
    """The server's optimiser of ``G_S`` and ``G_M`` (``settings.server_optimizer`` at ``server_lr``)."""
    if settings.server_optimizer == "sgd":
        return keras.optimizers.SGD(settings.server_lr, name="server_sgd")
    return keras.optimizers.Adam(settings.server_lr, name="server_adam")


class FederatedSimulation:
    """Shared ``G_S``/``G_M``, the server and every site's private state (module docstring).

    Args:
        model: the recorded generative model.
        ssm: the shape model it names.
        sites: every site's data, in engine order (site ``i`` on ``devices[i]``).
        glo: GLO settings: ``seed``, labelled ``batch_size``, ``lr_latent``, ``perceptual_weight``
            (``lr_shape``/``lr_material`` are not used: the server's optimiser updates ``G_S`` and ``G_M``).
        settings: the schedule and the server's optimiser.
        perceptual: the checked ``--perceptual`` choice (GLO's perceptual term).
        devices: one device per site (:func:`fedsim_tf.federation.devices.configure_site_devices`).
        cross_device_ops: the server step's reduction (default ``ReductionToOneDevice``).
    """

    def __init__(
        self,
        model: GenerativeModel,
        ssm: ShapeModel,
        sites: Sequence[SiteData],
        glo: GLOSettings,
        settings: FederatedSettings,
        perceptual: str,
        devices: Sequence[str],
        cross_device_ops: tf.distribute.CrossDeviceOps | None = None,
    ) -> None:
        self.model = model
        self.glo = glo
        self.settings = settings
        self.names = [site.name for site in sites]
        strategy = site_strategy(devices, cross_device_ops)
        with strategy.scope():
            self.shape_generator, self.material_generator = build_generators(model, glo.seed)
            backbone = perceptual_backbone(perceptual, PERCEPTUAL_IMAGE_SIZE)
            self.server_optimizer = make_server_optimizer(settings)
        logging.info("federated: %s", backbone.description)
        self.perceptual = None if backbone.model is None else PerceptualLoss(
            backbone.model, image_size=PERCEPTUAL_IMAGE_SIZE, slices=min(PERCEPTUAL_SLICES, model.coarse_size))
        shared = self.shape_generator.trainable_variables + self.material_generator.trainable_variables
        self.engine = FederatedEngine(strategy, shared, self.server_optimizer)
        self.simulator = simulator_for(model, ssm)
        counts = [len(site.targets) for site in sites]
        pooled = initial_codes(glo.seed, sum(counts), model.latent_dim)  # the pooled pre-training's first codes
        starts = np.cumsum([0] + counts[:-1])
        self.sites: list[SiteState] = []
        for index, (site, start) in enumerate(zip(sites, starts)):
            unlabelled = np.zeros((len(site.unlabelled_ids), model.latent_dim), np.float32)
            with self.engine.site_device(index):
                self.sites.append(SiteState(site, pooled[start:start + len(site.targets)], unlabelled, glo.lr_latent))
        self.labelled_batch = min(glo.batch_size, *counts)
        self.unlabelled_batch = min(settings.unlabelled_batch, *(len(s.unlabelled_ids) for s in sites))
        self._rounds: dict[bool, FederatedRound] = {}

    def trackables(self) -> dict[str, object]:
        """Everything but the GANs that a checkpoint must hold to resume exactly."""
        return {"shape_generator": self.shape_generator, "material_generator": self.material_generator,
                "server_optimizer": self.server_optimizer,
                "sites": {name: site.trackables() for name, site in zip(self.names, self.sites)}}

    def shared_variables(self) -> list[tf.Variable]:
        """The variables the server aggregates: ``G_S``'s then ``G_M``'s trainable variables."""
        return self.engine.shared_variables

    def _supervised_losses(self, site: SiteState) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
        def losses(indices: tf.Tensor) -> dict[str, tf.Tensor]:
            codes = tf.gather(site.codes, indices)
            generated = self.simulator(self.shape_generator(codes), self.material_generator(codes))
            terms, total = glo_losses(generated, tf.gather(site.masks, indices), tf.gather(site.coarse, indices),
                                      self.perceptual, self.glo.perceptual_weight)
            return {name: tf.reduce_mean(value) for name, value in terms.items()} | {"total": total}

        return losses

    def _unsupervised_losses(self, site: SiteState) -> Callable[[tuple[tf.Tensor, tf.Tensor]], dict[str, tf.Tensor]]:
        def losses(batch: tuple[tf.Tensor, tf.Tensor]) -> dict[str, tf.Tensor]:
            volumes, ks = batch
            real = tf.gather_nd(site.unlabelled_images, tf.stack([volumes, ks], axis=1))[..., None]
            return frozen_gan_losses(self.shape_generator, self.material_generator, self.simulator, site.gan,
                                     tf.gather(site.unlabelled_codes, volumes), ks, real)

        return losses

    def round_sites(self, supervised: bool) -> list[roles.Site]:
        """Every site's program for one kind of round (module docstring).

        Raises:
            ValueError: unsupervised rounds before every site has its GAN (:meth:`set_gans`).
        """
        programs = []
        for name, site in zip(self.names, self.sites):
            if supervised:
                phase = roles.Phase(self._supervised_losses(site), [roles.PrivateUpdate(
                    "total", [site.codes], site.code_optimizer, project_to_unit_ball)], shared_loss="total")
            else:
                if site.gan is None:
                    raise ValueError(f"site {name!r} has no GAN: call set_gans before the unsupervised rounds")
                phase = roles.Phase(self._unsupervised_losses(site), [roles.PrivateUpdate(
                    "g_total", [site.unlabelled_codes], site.unlabelled_optimizer, project_to_unit_ball)],
                    shared_loss="g_total")
            programs.append(roles.Site(name, [phase]))
        return programs

    def federated_round(self, supervised: bool) -> FederatedRound:
        """The compiled round of one kind (made once)."""
        if supervised not in self._rounds:
            self._rounds[supervised] = self.engine.compile_round(self.round_sites(supervised))
        return self._rounds[supervised]

    def batch(self, site: int, round_index: int, supervised: bool) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Site ``site``'s batch of a round: ``[b]`` int32 labelled-volume indices (supervised), or
        ``([b], [b])`` int32 unlabelled-volume indices and slice indices (unsupervised)."""
        return site_batch(self.sites[site].data, self.glo.seed, site, round_index, supervised, self.labelled_batch,
                          self.unlabelled_batch)

    def dataset_fn(self, supervised: bool) -> Callable[[int, int], tf.data.Dataset]:
        """``(site, start round) -> dataset`` of the site's batches of the rounds of this kind from
        ``start`` to the end of the schedule, in order (:meth:`FederatedEngine.site_inputs`)."""

        def make(site: int, start: int) -> tf.data.Dataset:
            rounds = [r for r in range(start, self.settings.total_rounds) if self.settings.supervised(r) == supervised]
            batches = [self.batch(site, r, supervised) for r in rounds]
            size = self.labelled_batch if supervised else self.unlabelled_batch
            empty = np.zeros((0, size), np.int32)
            if supervised:
                return tf.data.Dataset.from_tensor_slices(np.stack(batches) if batches else empty)
            volumes, ks = (np.stack(part) for part in zip(*batches)) if batches else (empty, empty)
            return tf.data.Dataset.from_tensor_slices((volumes, ks))

        return make

    def set_gans(self, gans: Sequence[GANTrainer]) -> None:
        """Give every site its (frozen) GAN for the unsupervised rounds; build them under
        ``engine.site_device(i)``."""
        for site, gan in zip(self.sites, gans):
            site.gan = gan

    def start_unlabelled_codes(self) -> LatentGaussian:
        """Draw every site's unlabelled codes from the Gaussian fitted to all labelled codes (as the
        single-site ``semi`` stage draws them from pre-training's Gaussian), projected onto the unit ball.

        In-process the Gaussian is fitted to the codes of all sites; a deployment would compute it from the
        sites' sums of codes and of their outer products (the server needs nothing else).

        Returns:
            The Gaussian.
        """
        gaussian = LatentGaussian.fit(np.concatenate([site.codes.numpy() for site in self.sites]))
        for index, site in enumerate(self.sites):
            site.unlabelled_codes.assign(unlabelled_start_codes(gaussian, self.glo.seed, index,
                                                                int(site.unlabelled_codes.shape[0])))
        return gaussian

    def all_codes(self, with_unlabelled: bool) -> np.ndarray:
        """``[n, D]``: every site's labelled codes (then unlabelled ones), sites in order."""
        parts = [site.codes.numpy() for site in self.sites]
        if with_unlabelled:
            parts += [site.unlabelled_codes.numpy() for site in self.sites]
        return np.concatenate(parts)
