"""Stage ``pretrain_gan``: one GauGAN per site turns simulated CT slices into the site's real ones (paper
Sec. 2.2, GAN pre-training).

``python -m fedsim_tf.main --stage=pretrain_gan [--site=CT20] [--material=learned|fixmat]``

For every site (or only ``--site``), the GAN trains on that site's labelled training volumes of the
fold: slice ``k`` (drawn at random over all slices) of the **ground-truth** label map, the simulator's
CT of that volume -- with ``--material=learned``, the coarse CT of the volume's learned code from the
``pretrain`` run of the same ``--fold``, label sizes and ``--seed``, trilinearly upsampled; with
``fixmat``, the Fix-Mat atlas of its labels simulated at full resolution -- and the plane ``k / K`` are
the input (:mod:`fedsim_tf.models.conditioning`); the real slice ``k`` supervises the output with
GauGAN's losses (:mod:`fedsim_tf.training.gan`, :mod:`fedsim_tf.training.gan_pretraining`).

Outputs per site: ``<work_dir>/pretrain_gan/<run>/<site>-<material>/`` (``gan.json``, ``checkpoints/``;
a rerun resumes, a rerun with other GAN settings is refused; :class:`~fedsim_tf.models.generative_model.GANRun`).
TensorBoard: ``<work_dir>/logs/pretrain_gan/<run>/<material>``, every site's losses and preview strips
(label | simulated CT | generated | real) side by side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from absl import flags, logging

from fedsim_tf.errors import UserInputError
from fedsim_tf.models.generative_model import GANRun, GeneratorRun
from fedsim_tf.options import CommonConfig, common_config_from_flags, perceptual_from_flags
from fedsim_tf.stages import gan_flags, inputs
from fedsim_tf.training.gan_settings import GANSettings

flags.DEFINE_integer("gan_steps", 2000, "pretrain_gan: training steps per site.", lower_bound=0)

FLAGS = flags.FLAGS

STAGE = "pretrain_gan"


@dataclass(frozen=True)
class PretrainGANConfig:
    """Settings of the pretrain_gan stage (flags above; ``common`` holds the shared ones)."""

    common: CommonConfig
    gan: GANSettings
    steps: int = 2000
    material: str = "learned"
    perceptual: str = "auto"
    checkpoint_every: int = 50
    log_every: int = 10


def config_from_flags() -> PretrainGANConfig:
    """Read and check the pretrain_gan flags."""
    common = common_config_from_flags()
    return PretrainGANConfig(common=common, gan=gan_flags.gan_settings_from_flags(common), steps=FLAGS.gan_steps,
                             material=FLAGS.material, perceptual=perceptual_from_flags(),
                             checkpoint_every=FLAGS.checkpoint_every, log_every=FLAGS.log_every)


def run(config: PretrainGANConfig) -> dict[str, object]:
    """Train the GAN of every chosen site; returns site name -> its trainer after the last step."""
    common = config.common
    plans = inputs.plan_sites(common)
    training_set = inputs.training_set(plans, common)
    chosen = [inputs.pick_site(plans, common.site)] if common.site else [p for p in plans if p.name in
                                                                        training_set.labelled]
    for plan in chosen:
        if plan.name not in training_set.labelled:
            raise UserInputError(f"--site={plan.name}: the --single_site generative model of this command line "
                                 f"learns from {', '.join(training_set.labelled)} only")
    pretrain_run = GeneratorRun(common.work_dir, training_set)
    needed_by = f"--stage={STAGE}"
    model = pretrain_run.load_model(needed_by)
    if model.label_grid.shape != (common.volume_size,) * 3:
        raise UserInputError(f"--volume_size={common.volume_size}: the pre-trained model's label grid is "
                             f"{model.label_grid.shape}; use the --volume_size of pre-training")
    gan_runs = [GANRun(common.work_dir, training_set, plan.name, config.material) for plan in chosen]
    for gan_run in gan_runs:
        gan_run.write_record(config.gan, common.volume_size)
    sites = {plan.name: inputs.load_plan(plan, common) for plan in chosen}

    # TensorFlow loads here, once the inputs are checked.
    from fedsim_tf.training import gan_data, gan_pretraining
    from fedsim_tf.training.pretrained import PretrainedModel
    from fedsim_tf.training.summaries import Summaries

    pretrained = PretrainedModel(pretrain_run, model) if config.material == "learned" else None
    summaries = Summaries(os.path.join(common.work_dir, "logs", STAGE, training_set.name, config.material))
    trainers = {}
    for gan_run in gan_runs:
        ids = training_set.labelled[gan_run.site]
        cases = [sites[gan_run.site].cases[case_id] for case_id in ids]
        labels = np.stack([case.label for case in cases])
        ct = (gan_data.learned_ct(pretrained.material_generator, pretrained.simulator, pretrained.codes(gan_run.site),
                                  model.label_grid.shape) if pretrained else gan_data.fixmat_ct(labels, model))
        source = gan_data.SliceSource(ct, labels, np.stack([case.image for case in cases]), tuple(ids))
        trainers[gan_run.site] = gan_pretraining.train_site(
            gan_run, source, config.gan, config.steps, config.perceptual, config.checkpoint_every,
            config.log_every, summaries)
        logging.info("pretrain_gan %s: done -> %s", gan_run.site, gan_run.folder)
    return trainers
