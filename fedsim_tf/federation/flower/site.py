"""One hospital of the Flower federation: its data, its private state and its step of each kind of request.

A Flower ``ClientApp`` runs in a fresh process for every message, so the site keeps everything private in
its own work dir (``<work_dir>/flower/<site>/``), never in a message:

* ``state/round-NNNNNN/``: a TensorFlow checkpoint of the site's codes, unlabelled codes and their
  optimisers after round ``NNNNNN`` (written to a temporary folder, then renamed). A request for round
  ``r`` starts from the latest state before ``r`` (or the initial codes), so a request that is repeated --
  the server restarted from an older checkpoint, or the site missed rounds while it was away -- computes
  from the state the round needs, and a site that rejoins catches up from the weights the request carries;
* its GAN (``gan/``, the stage's GAN folder layout and checkpoints), trained by the ``gan`` request.

The site's settings come from the same flags as ``--stage=federated`` (a flagfile the federation agrees
on, its own ``--data_dir`` and ``--work_dir``); the federation-wide numbers -- the site's index, the slice
of the pooled initial codes, the batch sizes, the round -- come with each request (:class:`SitePlan`).
The site's step reuses the in-process stage's programs (:class:`~fedsim_tf.training.federated.
FederatedSimulation` of this one site; :func:`~fedsim_tf.federation.roles.site_step`), so a Flower round
computes what a round of ``--stage=federated`` computes for this site.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from fedsim_tf.errors import UserInputError
from fedsim_tf.federation import roles
from fedsim_tf.federation.flower.privacy import PrivacySettings, privatise
from fedsim_tf.models.generative_model import GANRun, GenerativeModel, TrainingSet, load_shape_model
from fedsim_tf.stages import federated, inputs
from fedsim_tf.training.federated import FederatedSimulation, SiteData, site_batch, unlabelled_start_codes
from fedsim_tf.training.gan_data import SliceSource, learned_ct
from fedsim_tf.training.gan_pretraining import train_site
from fedsim_tf.training.glo import initial_codes
from fedsim_tf.training.latent_gaussian import LatentGaussian
from fedsim_tf.training.pretraining import glo_targets
from fedsim_tf.training.semi_run import frozen_gan
from fedsim_tf.training.summaries import Summaries

CPU = "/CPU:0"


@dataclass(frozen=True)
class SitePlan:
    """The federation-wide numbers a site needs (sent by the server with every request).

    Attributes:
        index: the site's index in the federation (the in-process engine's replica; its random streams).
        code_offset: first row of its labelled codes among the pooled initial codes of all sites.
        code_total: number of labelled codes of all sites.
        labelled_batch: labelled volumes per site per supervised round (the smallest site's count or GLO's).
        unlabelled_batch: unlabelled volumes per site per unsupervised round.
    """

    index: int
    code_offset: int
    code_total: int
    labelled_batch: int
    unlabelled_batch: int


def load_site_data(config: federated.FederatedConfig) -> SiteData:
    """The site's labelled and unlabelled training volumes of ``config.common.fold`` (one ``--data_dir``).

    Raises:
        UserInputError: not exactly one ``--data_dir``, or a site without labelled training volumes.
    """
    common = config.common
    if len(common.data_dirs) != 1:
        raise UserInputError(f"a Flower site reads exactly one --data_dir, got {len(common.data_dirs)}")
    (plan,) = inputs.plan_sites(common)
    site = inputs.load_plan(plan, common)
    ids = plan.fold_ids(common.fold)
    labelled = [(site.name, site.cases[case_id]) for case_id in ids["train_labelled"]]
    if not labelled:
        raise UserInputError(f"site {site.name}: no labelled training volume in fold {common.fold}")
    extra = [site.cases[case_id] for case_id in ids["train_unlabelled"]]
    images = np.stack([case.image for _, case in labelled])
    unlabelled = (np.stack([case.image for case in extra]) if extra
                  else np.zeros((0, *images.shape[1:]), np.float32))
    return SiteData(glo_targets(labelled), images, unlabelled, tuple(case.case_id for case in extra))


class SiteRuntime:
    """The site's models and private state for one request (see the module docstring).

    Args:
        config: the site's settings (its flags; ``common.data_dirs`` its one folder).
        model: the generative model's record (sent by the server).
        data: the site's volumes (:func:`load_site_data`).
        plan: the federation-wide numbers.
    """

    def __init__(self, config: federated.FederatedConfig, model: GenerativeModel, data: SiteData,
                 plan: SitePlan) -> None:
        self.config = config
        self.model = model
        self.data = data
        self.plan = plan
        self.folder = os.path.join(config.common.work_dir, "flower", data.name)
        ssm = load_shape_model(model.ssm)
        self.simulation = FederatedSimulation(model, ssm, [data], config.glo, config.federated, config.perceptual,
                                              [CPU])
        self.simulation.labelled_batch = plan.labelled_batch
        self.simulation.unlabelled_batch = plan.unlabelled_batch
        self.state = self.simulation.sites[0]
        pooled = initial_codes(config.glo.seed, plan.code_total, model.latent_dim)
        self.state.codes.assign(pooled[plan.code_offset:plan.code_offset + len(data.targets)])
        self._checkpoint = self.state.trackables()

    @property
    def gan_run(self) -> GANRun:
        """The site's GAN folder (the stage's layout, keyed by the site's own labelled training volumes)."""
        training_set = TrainingSet(self.config.common.fold, self.config.common.seed,
                                   {self.data.name: list(self.data.targets.case_ids)})
        return GANRun(os.path.join(self.folder, "gan"), training_set, self.data.name, federated.GAN_MATERIAL,
                      stage=federated.STAGE)

    def shared_variables(self) -> list[tf.Variable]:
        """``G_S``'s then ``G_M``'s trainable variables (the order of every weight and update list)."""
        return self.simulation.shared_variables()

    def set_shared(self, weights: list[np.ndarray]) -> None:
        """Set ``G_S``/``G_M`` to the broadcast weights (checked against the variables' shapes).

        Raises:
            ValueError: a wrong number, shape or dtype of arrays.
        """
        variables = self.shared_variables()
        roles.validate_update([tf.constant(w) for w in weights], variables, "server")
        for variable, value in zip(variables, weights):
            variable.assign(value)

    def _state_dir(self, round_index: int) -> str:
        return os.path.join(self.folder, "state", f"round-{round_index:06d}")

    def saved_rounds(self) -> list[int]:
        """The rounds whose end state is saved, ascending."""
        folder = os.path.join(self.folder, "state")
        names = os.listdir(folder) if os.path.isdir(folder) else []
        return sorted(int(name[len("round-"):]) for name in names if name.startswith("round-"))

    def restore_before(self, round_index: int) -> int:
        """Restore the latest saved state of a round before ``round_index``; returns that round (-1: the
        initial state, nothing restored)."""
        earlier = [r for r in self.saved_rounds() if r < round_index]
        if not earlier:
            return -1
        self._checkpoint.read(os.path.join(self._state_dir(earlier[-1]), "state")).assert_consumed()
        return earlier[-1]

    def save(self, round_index: int, keep: int) -> None:
        """Save the state after ``round_index`` (temporary folder, then rename); keep the ``keep`` latest."""
        final = self._state_dir(round_index)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        temporary = tempfile.mkdtemp(prefix=".round-", dir=os.path.dirname(final))
        try:
            self._checkpoint.write(os.path.join(temporary, "state"))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(temporary, final)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        for old in self.saved_rounds()[:-keep]:
            shutil.rmtree(self._state_dir(old), ignore_errors=True)

    def round_step(self, round_index: int, supervised: bool, gaussian: LatentGaussian | None,
                   privacy: PrivacySettings | None) -> tuple[list[np.ndarray], bool, int]:
        """The site's step of round ``round_index`` on the broadcast weights (already set).

        Args:
            round_index: the round.
            supervised: its kind.
            gaussian: the Gaussian of all labelled codes (semi-supervised rounds: the first unlabelled codes
                are drawn from it when the site's state predates them).
            privacy: clipping and noise of the update, or ``None``.

        Returns:
            ``(update, finite, examples)``: one float32 array per shared variable, whether every loss and
            gradient was finite, and the batch size.
        """
        restored = self.restore_before(round_index)
        if round_index >= self.config.federated.pretrain_rounds and restored < self.config.federated.pretrain_rounds:
            if gaussian is None:
                raise ValueError(f"round {round_index}: the semi-supervised rounds need the labelled codes' Gaussian")
            count = int(self.state.unlabelled_codes.shape[0])
            self.state.unlabelled_codes.assign(unlabelled_start_codes(gaussian, self.config.glo.seed, self.plan.index,
                                                                      count))
        if not supervised:
            if tf.train.latest_checkpoint(self.gan_run.checkpoint_dir) is None:
                raise ValueError(f"site {self.data.name} has no GAN (it missed the GAN phase): it cannot take part "
                                 "in the unsupervised rounds")
            with tf.device(CPU):
                self.simulation.set_gans([frozen_gan(self.gan_run, self.config.gan, self.model.label_grid.shape[-1])])
        (program,) = self.simulation.round_sites(supervised)
        batch = site_batch(self.data, self.config.glo.seed, self.plan.index, round_index, supervised,
                           self.plan.labelled_batch, self.plan.unlabelled_batch)
        step = tf.function(lambda b: roles.site_step(program, self.shared_variables(), b))
        report = step(tf.nest.map_structure(tf.constant, batch))
        update = [np.asarray(g.numpy(), np.float32) for g in report.shared_gradients]
        finite = bool(report.finite)
        if privacy is not None and finite:
            update = privatise(update, privacy, np.random.default_rng())
        self.save(round_index, keep=self.config.federated.checkpoint_every + 2)
        examples = len(batch) if supervised else len(batch[0])
        return update, finite, examples

    def pretrain_gan(self) -> None:
        """Train (or resume) the site's GAN on ``G_M``'s coarse CT of its codes at the end of pre-training
        (the broadcast weights, already set); the state of the last pre-training round is restored first."""
        self.restore_before(self.config.federated.pretrain_rounds)
        run = self.gan_run
        run.write_record(self.config.gan, self.config.common.volume_size)
        label_shape = self.model.label_grid.shape
        with tf.device(CPU):
            ct = learned_ct(self.simulation.material_generator, self.simulation.simulator, self.state.codes.numpy(),
                            label_shape)
            source = SliceSource(ct, self.data.targets.labels, self.data.images, self.data.targets.case_ids)
            settings = self.config.federated
            train_site(run, source, self.config.gan, settings.gan_steps, self.config.perceptual,
                       settings.checkpoint_every, settings.log_every, Summaries(os.path.join(self.folder, "logs")))

    def codes_after(self, round_index: int, with_unlabelled: bool) -> np.ndarray:
        """``[n, D]`` float64: the site's codes after ``round_index`` (then its unlabelled ones)."""
        self.restore_before(round_index + 1)
        parts = [self.state.codes.numpy()]
        if with_unlabelled:
            parts.append(self.state.unlabelled_codes.numpy())
        return np.concatenate(parts).astype(np.float64)
