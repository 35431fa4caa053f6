"""Stage ``federated``: federated simulation across sites: shared G_S/G_M, one GAN per site (paper Sec. 2.3).

``python -m fedsim_tf.main --stage=federated [--flagfile=flags/paper.cfg] [--fed_devices=CPU]``

The single-site schedule, federated over every site (``--data_dir`` folders or the phantom hospitals), one
``tf.distribute`` replica per site (:mod:`fedsim_tf.training.federated`, :mod:`fedsim_tf.training.federated_run`):

1. ``--fed_pretrain_rounds`` rounds of federated GLO pre-training: every site takes one GLO step on its
   own labelled training volumes (fold ``--fold``, ``--label_size``); the server averages the sites'
   gradients of ``G_S`` and ``G_M`` -- the only shared variables -- and applies one update with its own
   optimiser (``--fed_server_optimizer``, Adam by default, at ``--fed_server_lr``; GLO's ``--lr_shape`` and
   ``--lr_material`` are not used); each site's codes (RMSprop, ``--lr_latent``, unit ball) stay on it;
2. every site trains its own GAN (``--fed_gan_steps`` steps; the GAN flags of
   :mod:`fedsim_tf.stages.gan_flags`) on the federated ``G_M``'s coarse CT of its volumes: GANs are private,
   nothing is aggregated;
3. ``--fed_semi_rounds`` semi-supervised rounds, alternating supervised rounds (as 1) and unsupervised
   rounds: each site runs the full generative process from codes of its unlabelled training volumes
   (``--fed_unlabelled_batch`` per round, codes first drawn from the Gaussian of the labelled codes) and
   its frozen GAN judges the slices; the gradient of ``G_S``/``G_M`` goes to the server.

A site whose loss or gradient is not finite in a round is left out of that round's average (logged, and
counted per site in TensorBoard); the others go on. Every site needs labelled training volumes (a site
without is refused when the sites are planned), and with ``--fed_semi_rounds`` > 0 unlabelled ones.

Devices: one per site, ``--fed_devices`` (:mod:`fedsim_tf.stages.federation_flags`): logical CPUs on a
CPU machine, the GPUs or logical GPUs of a GPU machine. TensorFlow fixes its devices when it first uses
them, so :func:`run` configures them first thing -- before it reads a volume -- and must be the first
code to touch TensorFlow in the process (``python -m fedsim_tf.main`` parses and checks the command line
without TensorFlow). ``--single_site`` is refused (the federation learns from every site).

Outputs: ``<work_dir>/federated/<fold, seed, label sizes>/`` -- a generator run like ``pretrain``'s
(``model.json``, ``checkpoints/``, ``latent_gaussian.npz`` fitted to all sites' codes) -- and each site's
GAN in ``<site>-learned/`` inside it, so ``--stage=synthesize --generator=federated --site=X`` draws from
the shared ``G_S``/``G_M`` and site X's own GAN. A rerun resumes (rounds and GANs); a rerun with other
model or GAN settings is refused. TensorBoard: ``<work_dir>/logs/federated/<run>`` (per-site curves side by
side, ``left_out_rounds``, ``sites_used``; ``gan/``: the GANs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from absl import flags, logging

from fedsim_tf.data.case import Case
from fedsim_tf.errors import UserInputError
from fedsim_tf.models.generative_model import GANRun, GenerativeModel, GeneratorRun, TrainingSet
from fedsim_tf.options import CommonConfig, common_config_from_flags, perceptual_from_flags
from fedsim_tf.shape.ssm import StatisticalShapeModel
from fedsim_tf.stages import federation_flags, gan_flags, glo_flags, inputs, model_flags
from fedsim_tf.training.federated_settings import SERVER_OPTIMIZERS, FederatedSettings
from fedsim_tf.training.gan_settings import GANSettings
from fedsim_tf.training.glo_settings import GLOSettings

if TYPE_CHECKING:  # TensorFlow loads only once the devices are configured
    from fedsim_tf.training.federated import SiteData

flags.DEFINE_integer("fed_pretrain_rounds", 300, "federated: rounds of federated GLO pre-training.", lower_bound=0)
flags.DEFINE_integer("fed_gan_steps", 2000, "federated: GAN pre-training steps of every site's own GAN.",
                     lower_bound=1)
flags.DEFINE_integer("fed_semi_rounds", 400, "federated: semi-supervised rounds, alternating supervised and "
                     "unsupervised.", lower_bound=0)
flags.DEFINE_integer("fed_unlabelled_batch", 2, "federated: unlabelled volumes per site per unsupervised round.",
                     lower_bound=1)
flags.DEFINE_enum("fed_server_optimizer", "adam", list(SERVER_OPTIMIZERS), "federated: the server's optimiser of "
                  "G_S and G_M (adam; sgd: plain averaged-gradient descent).")
flags.DEFINE_float("fed_server_lr", 1e-3, "federated: learning rate of the server's optimiser.", lower_bound=0.0)

FLAGS = flags.FLAGS

STAGE = "federated"
GAN_MATERIAL = "learned"


@dataclass(frozen=True)
class FederatedConfig:
    """Settings of the federated stage (flags above; ``common`` holds the shared ones)."""

    common: CommonConfig
    glo: GLOSettings
    federated: FederatedSettings
    gan: GANSettings
    model: model_flags.ModelConfig = model_flags.ModelConfig()
    devices: federation_flags.DeviceConfig = federation_flags.DeviceConfig()
    perceptual: str = "auto"


def config_from_flags() -> FederatedConfig:
    """Read and check the federated flags; raises :class:`UserInputError` naming the bad flag."""
    common = common_config_from_flags()
    if common.single_site:
        raise UserInputError("--single_site: the federated stage learns from every site; drop --single_site")
    if FLAGS.fed_server_lr <= 0:
        raise UserInputError(f"--fed_server_lr={FLAGS.fed_server_lr}: must be positive")
    settings = FederatedSettings(
        pretrain_rounds=FLAGS.fed_pretrain_rounds, gan_steps=FLAGS.fed_gan_steps, semi_rounds=FLAGS.fed_semi_rounds,
        unlabelled_batch=FLAGS.fed_unlabelled_batch, server_optimizer=FLAGS.fed_server_optimizer,
        server_lr=FLAGS.fed_server_lr, checkpoint_every=FLAGS.checkpoint_every, log_every=FLAGS.log_every)
    return FederatedConfig(common=common, glo=glo_flags.glo_settings_from_flags(common, settings.total_rounds),
                           federated=settings, gan=gan_flags.gan_settings_from_flags(common),
                           model=model_flags.model_config_from_flags(common),
                           devices=federation_flags.device_config_from_flags(), perceptual=perceptual_from_flags())


@dataclass(frozen=True)
class Inputs:
    """What :func:`prepare` checked and loaded, sites in order.

    Attributes:
        run: the federated generator run (``model.json`` written).
        model: the generative model; ``ssm`` the shape model it names.
        labelled: per site, ``(site, case)`` of its labelled training volumes.
        unlabelled: per site, its unlabelled training volumes.
        gan_runs: per site, its GAN folder (record written).
    """

    run: GeneratorRun
    model: GenerativeModel
    ssm: StatisticalShapeModel
    labelled: list[list[tuple[str, Case]]]
    unlabelled: list[list[Case]]
    gan_runs: list[GANRun]

    @property
    def training_set(self) -> TrainingSet:
        return self.run.training_set


def prepare(config: FederatedConfig) -> Inputs:
    """Plan and load the sites, record the model and the GANs; plain Python and NumPy (no TensorFlow).

    Raises:
        UserInputError: a site without labelled training volumes (refused when its folds are planned),
            without unlabelled ones when semi-supervised rounds are asked for, or an earlier run with other
            settings in the run's folder.
    """
    common = config.common
    plans = inputs.plan_sites(common)
    training_set = inputs.training_set(plans, common)
    unlabelled_ids = {plan.name: plan.fold_ids(common.fold)["train_unlabelled"] for plan in plans}
    missing = [name for name, ids in unlabelled_ids.items() if not ids]
    if config.federated.semi_rounds and missing:
        raise UserInputError(f"--stage={STAGE}: site(s) {', '.join(missing)} have no unlabelled training volume in "
                             f"fold {common.fold} for the semi-supervised rounds; lower --label_size, add image-only "
                             "volumes or set --fed_semi_rounds=0")
    run = GeneratorRun(common.work_dir, training_set, STAGE)
    sites = [inputs.load_plan(plan, common) for plan in plans]
    labelled = [[(site.name, site.cases[case_id]) for case_id in training_set.labelled[site.name]] for site in sites]
    model, ssm = model_flags.generative_model(config.model, common.coarse_size, [c for cases in labelled for c in cases],
                                              run, STAGE)
    run.write_model(model)
    gan_runs = [GANRun(common.work_dir, training_set, site.name, GAN_MATERIAL, stage=STAGE) for site in sites]
    for gan_run in gan_runs:
        gan_run.write_record(config.gan, common.volume_size)
    unlabelled = [[site.cases[case_id] for case_id in unlabelled_ids[site.name]] for site in sites]
    return Inputs(run, model, ssm, labelled, unlabelled, gan_runs)


def site_data(prepared: Inputs) -> list[SiteData]:
    """Every site's training data (:class:`~fedsim_tf.training.federated.SiteData`), sites in order."""
    from fedsim_tf.training.federated import SiteData
    from fedsim_tf.training.pretraining import glo_targets

    volume_shape = prepared.model.label_grid.shape
    return [SiteData(glo_targets(cases), np.stack([case.image for _, case in cases]),
                     np.stack([case.image for case in extra]) if extra else np.zeros((0, *volume_shape), np.float32),
                     tuple(case.case_id for case in extra))
            for cases, extra in zip(prepared.labelled, prepared.unlabelled)]


def run(config: FederatedConfig) -> object:
    """The stage: configure one device per site (TensorFlow loads here, first), check and load the sites,
    then train (:func:`fedsim_tf.training.federated_run.train`).

    Returns:
        The :class:`~fedsim_tf.training.federated.FederatedSimulation` after the last round.
    """
    common = config.common
    devices = federation_flags.site_devices(config.devices, inputs.site_count(common))
    prepared = prepare(config)

    from fedsim_tf.training import federated_run  # TensorFlow's devices are set: the rest may load now

    log_dir = os.path.join(common.work_dir, "logs", STAGE, prepared.training_set.name)
    simulation = federated_run.train(prepared.run, prepared.model, prepared.ssm, site_data(prepared),
                                     prepared.gan_runs, config.glo,
                                     config.federated, config.gan, config.perceptual, log_dir, devices)
    logging.info("federated: done -> %s", prepared.run.folder)
    return simulation
