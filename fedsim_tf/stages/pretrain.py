"""Stage ``pretrain``: GLO pre-training of the shape and material generators (paper Sec. 2.2).

``python -m fedsim_tf.main --stage=pretrain [--flagfile=flags/paper.cfg]``

Data: the labelled training split (fold ``--fold``, ``--label_size``) of every site, pooled (``G_S``
and ``G_M`` model shapes and materials across sites, Sec. 2.3), or with ``--single_site`` of ``--site``
alone (the paper's single-site simulation); each volume gets its own latent code. See :mod:`fedsim_tf.training.glo` for the losses and optimisers and
:mod:`fedsim_tf.training.pretraining` for the run; the model's grids, shape model and pose ranges are
those of :mod:`fedsim_tf.stages.model_flags`.

Outputs: the run folder ``<work_dir>/pretrain/<fold, seed, label sizes>/`` of
:mod:`fedsim_tf.models.generative_model` (``model.json``, ``checkpoints/``, ``latent_gaussian.npz``,
``ssm.npz`` with ``--ssm=build``); a rerun resumes from the latest checkpoint, and a rerun with other
model settings is refused. TensorBoard: ``<work_dir>/logs/pretrain/<run>`` (losses, IoU, learning
rates, middle slices; per site).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from absl import flags

from fedsim_tf.models.generative_model import GeneratorRun
from fedsim_tf.options import CommonConfig, common_config_from_flags, perceptual_from_flags
from fedsim_tf.stages import glo_flags, inputs, model_flags
from fedsim_tf.training.glo_settings import GLOSettings

flags.DEFINE_integer("pretrain_steps", 300, "pretrain: optimisation steps.", lower_bound=0)

FLAGS = flags.FLAGS

STAGE = "pretrain"


@dataclass(frozen=True)
class PretrainConfig:
    """Settings of the pretrain stage (flags above; ``common`` holds the shared ones, ``model`` those of
    :mod:`fedsim_tf.stages.model_flags`)."""

    common: CommonConfig
    glo: GLOSettings = GLOSettings()
    perceptual: str = "auto"
    model: model_flags.ModelConfig = model_flags.ModelConfig()


def config_from_flags() -> PretrainConfig:
    """Read and check the pretrain flags; raises :class:`UserInputError` naming the bad flag."""
    common = common_config_from_flags()
    return PretrainConfig(common=common, glo=glo_flags.glo_settings_from_flags(common, FLAGS.pretrain_steps),
                          perceptual=perceptual_from_flags(), model=model_flags.model_config_from_flags(common))


def run(config: PretrainConfig) -> object:
    """The stage: plan and load the sites, resolve the SSM, record the model, pre-train.

    Returns:
        The :class:`~fedsim_tf.training.glo.GLOTrainer` after the last step.
    """
    common = config.common
    plans = inputs.generator_sites(inputs.plan_sites(common), common)
    pretrain_run = GeneratorRun(common.work_dir, inputs.training_set(plans, common))
    sites = [inputs.load_plan(plan, common) for plan in plans]
    cases = [(site.name, site.cases[case_id]) for site in sites
             for case_id in pretrain_run.training_set.labelled[site.name]]
    model, ssm = model_flags.generative_model(config.model, common.coarse_size, cases, pretrain_run, STAGE)
    pretrain_run.write_model(model)

    from fedsim_tf.training import pretraining  # TensorFlow loads here, once the inputs are checked

    log_dir = os.path.join(common.work_dir, "logs", STAGE, pretrain_run.training_set.name)
    return pretraining.train(pretrain_run, model, pretraining.glo_targets(cases), ssm, config.glo,
                             config.perceptual, log_dir)
