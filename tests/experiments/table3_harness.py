"""Runs the whole Table 3 protocol on two tiny sites in a fresh process (the federated cells need one logical
CPU device per site, configured before TensorFlow initialises, which pytest's process has done), with 2
TensorFlow threads, and writes what it observed as JSON:

    python -m tests.experiments.table3_harness OUT.json ROOT [--once]

The sites are written under ROOT unless they are there already (a rerun after a kill finds them). Without
``--once`` the protocol runs twice (the second run should run no cell). Nothing is asserted here
(:mod:`tests.experiments.test_table3_protocol` does).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fedsim_tf.experiments.table3_cells import StageConfigs  # noqa: E402
from fedsim_tf.options import CommonConfig  # noqa: E402
from fedsim_tf.physics.simulated_scanner import SimulatedScanner  # noqa: E402
from fedsim_tf.stages import (experiment, federated, federation_flags, model_flags, pretrain, pretrain_gan,  # noqa: E402
                              segment, semi, synthesize)
from fedsim_tf.training.federated_settings import FederatedSettings  # noqa: E402
from fedsim_tf.training.gan_settings import GANSettings  # noqa: E402
from fedsim_tf.training.glo_settings import GLOSettings  # noqa: E402
from fedsim_tf.training.segmentation_settings import SegmentationSettings  # noqa: E402
from fedsim_tf.training.semi_settings import SemiSettings  # noqa: E402
from tests.experiments.table3_checks import read_ledger, read_outputs  # noqa: E402
from tests.stages.sites import write_site  # noqa: E402

STEPS = 2


def config(root: Path) -> experiment.ExperimentConfig:
    """Two sites of 5 volumes (3 training, L = 2), 16^3 labels, 8^3 material, 2 steps of everything, 2 synthetic
    volumes per set, a 2-filter nnU-Net, one fold, single-site generators."""
    common = CommonConfig(data_dirs=(str(root / "A"), str(root / "B")), layout="mmwhs", work_dir=str(root / "work"),
                          seed=1, fold=0, label_size=2, volume_size=16, fov_mm=120.0, coarse_size=8, phantom_dir="",
                          phantom_small=True)
    glo = GLOSettings(seed=1, batch_size=2, steps=STEPS, checkpoint_every=STEPS, log_every=1)
    gan = GANSettings(ngf=4, num_upsamplings=2, spade_hidden=8, ndf=4, seed=1, batch_size=2)
    model = model_flags.ModelConfig(latent_dim=4, scanner=SimulatedScanner(views=8))
    fed = FederatedSettings(pretrain_rounds=STEPS, gan_steps=STEPS, semi_rounds=STEPS, unlabelled_batch=1,
                            checkpoint_every=STEPS, log_every=1)
    training = SegmentationSettings(unet="nnunet", base_filters=2, batch_size=1, steps=STEPS, lr=1e-3, val_every=1,
                                    seed=1)
    stages = StageConfigs(
        pretrain=pretrain.PretrainConfig(common=common, glo=glo, perceptual="none", model=model),
        pretrain_gan=pretrain_gan.PretrainGANConfig(common=common, gan=gan, steps=STEPS, perceptual="none",
                                                    checkpoint_every=STEPS, log_every=1),
        semi=semi.SemiConfig(common=common, glo=glo, semi=SemiSettings(steps=STEPS, unlabelled_batch=1,
                                                                       checkpoint_every=STEPS, log_every=1),
                             perceptual="none"),
        federated=federated.FederatedConfig(common=common, glo=glo, federated=fed, gan=gan, model=model,
                                            devices=federation_flags.DeviceConfig("CPU"), perceptual="none"),
        synthesize=synthesize.SynthesizeConfig(common=common, num_samples=2, slice_batch=8),
        segment=segment.SegmentConfig(common=common, mode="lower", folds=1, training=training),
        seg_batch_size=1, seg_pretrain_steps=STEPS)
    return experiment.ExperimentConfig(table=3, stages=stages, settings=("",), single_site=True,
                                       command_line=("--stage=experiment", "--table=3", "(tiny test protocol)"))


def main(out: str, root: str, *options: str) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    base = Path(root)
    for name, seed in (("A", 1), ("B", 2)):
        if not (base / name).is_dir():
            write_site(base / name, 5, seed=seed)
    cfg = config(base)
    started = time.monotonic()
    paths = experiment.run(cfg)
    first_s = time.monotonic() - started
    first = read_ledger(base / "work")
    started = time.monotonic()
    if "--once" not in options:
        experiment.run(cfg)
    rerun_s = time.monotonic() - started
    observed = {"paths": {name: str(path) for name, path in paths.items()}, "cells": [c.key for c in experiment.plan(cfg)],
                "first": first, "first_s": first_s, "rerun_s": rerun_s, **read_outputs(base / "work")}
    Path(out).write_text(json.dumps(observed))


if __name__ == "__main__":
    main(*sys.argv[1:])
