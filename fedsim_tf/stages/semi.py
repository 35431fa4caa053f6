"""Stage ``semi``: semi-supervised training of the shape and material generators on the unlabelled volumes
(paper Sec. 2.2; the paper's "Ours-Full").

``python -m fedsim_tf.main --stage=semi [--single_site --site=CT20]``

Continues the ``pretrain`` run of the same ``--fold``, label sizes and ``--seed`` (its generators, codes
and optimisers) and alternates GLO steps on the labelled training volumes with unsupervised steps on the
unlabelled ones -- the fold's training volumes beyond the label size and the site's image-only volumes
-- through each site's frozen GAN of ``--stage=pretrain_gan --material=learned``
(:mod:`fedsim_tf.training.semi`).

Output: ``<work_dir>/semi/<run>/`` with the layout of the pretrain run (``model.json``, ``checkpoints/``,
``latent_gaussian.npz`` fitted to the labelled and unlabelled codes), so ``--stage=synthesize
--generator=semi`` draws from it; a rerun resumes. TensorBoard: ``<work_dir>/logs/semi/<run>``
(supervised and per-site unsupervised losses).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from absl import flags, logging

from fedsim_tf.errors import UserInputError
from fedsim_tf.models.generative_model import GANRun, GeneratorRun
from fedsim_tf.options import CommonConfig, common_config_from_flags, perceptual_from_flags
from fedsim_tf.stages import glo_flags, inputs
from fedsim_tf.training.glo_settings import GLOSettings
from fedsim_tf.training.semi_settings import SemiSettings

flags.DEFINE_integer("semi_steps", 400, "semi: total steps, alternating supervised and unsupervised.", lower_bound=0)
flags.DEFINE_integer("semi_unlabelled_batch", 2, "semi: unlabelled volumes per unsupervised step.", lower_bound=1)

FLAGS = flags.FLAGS

STAGE = "semi"
GAN_MATERIAL = "learned"


@dataclass(frozen=True)
class SemiConfig:
    """Settings of the semi stage (flags above; ``common`` holds the shared ones)."""

    common: CommonConfig
    glo: GLOSettings
    semi: SemiSettings
    perceptual: str = "auto"


def config_from_flags() -> SemiConfig:
    """Read and check the semi flags."""
    common = common_config_from_flags()
    semi = SemiSettings(steps=FLAGS.semi_steps, unlabelled_batch=FLAGS.semi_unlabelled_batch,
                        checkpoint_every=FLAGS.checkpoint_every, log_every=FLAGS.log_every)
    return SemiConfig(common=common, glo=glo_flags.glo_settings_from_flags(common, FLAGS.semi_steps), semi=semi,
                      perceptual=perceptual_from_flags())


def run(config: SemiConfig) -> object:
    """The stage; returns the :class:`~fedsim_tf.training.semi.SemiTrainer` after the last step."""
    common = config.common
    plans = inputs.generator_sites(inputs.plan_sites(common), common)
    training_set = inputs.training_set(plans, common)
    needed_by = f"--stage={STAGE}"
    pretrain_run = GeneratorRun(common.work_dir, training_set, "pretrain")
    semi_run = GeneratorRun(common.work_dir, training_set, STAGE)
    model = pretrain_run.load_model(needed_by)
    gaussian_path = pretrain_run.require_gaussian(needed_by)
    unlabelled = {plan.name: plan.fold_ids(common.fold)["train_unlabelled"] for plan in plans}
    if not any(unlabelled.values()):
        raise UserInputError(f"{needed_by}: no unlabelled training volume in {', '.join(unlabelled)} (fold "
                             f"{common.fold}); lower --label_size or add image-only volumes")
    gan_runs = {name: GANRun(common.work_dir, training_set, name, GAN_MATERIAL) for name, ids in unlabelled.items()
                if ids}
    gan_records = {name: gan_run.load_record(needed_by) for name, gan_run in gan_runs.items()}
    semi_run.write_model(model)
    sites = {plan.name: inputs.load_plan(plan, common) for plan in plans}

    # TensorFlow loads here, once the inputs are checked.
    from fedsim_tf.training import semi_run as semi_loop

    cases = [(name, sites[name].cases[case_id]) for name, ids in training_set.labelled.items() for case_id in ids]
    images = {name: np.stack([sites[name].cases[case_id].image for case_id in ids]) for name, ids in unlabelled.items()
              if ids}
    log_dir = os.path.join(common.work_dir, "logs", STAGE, training_set.name)
    trainer = semi_loop.train(pretrain_run, semi_run, model, cases, images, unlabelled, gan_runs, gan_records,
                              config.glo, config.semi, config.perceptual, gaussian_path, log_dir)
    logging.info("semi: done -> %s", semi_run.folder)
    return trainer
