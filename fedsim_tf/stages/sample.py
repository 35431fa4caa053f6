"""Stage ``sample``: draw new hearts from the pre-trained shape/material model.

``python -m fedsim_tf.main --stage=sample --num_samples=20``

Reads the pre-training run of the same ``--fold``, label sizes and ``--seed``
(:mod:`fedsim_tf.models.generative_model`: ``model.json``, the latest checkpoint,
``latent_gaussian.npz``), draws ``z`` from the fitted Gaussian (seeded by ``--seed``), projects each
draw onto the unit ball (the region the generators were trained on), and writes per sample,
atomically, under ``<work_dir>/samples/<run>/``:

* ``sample_NNNN_label.nii.gz``: uint16 label map with MM-WHS codes (205, 420, 500, 550, 600, 820,
  850; 0 background) on the pre-training label grid (its RAS+ affine in mm);
* ``sample_NNNN_coarse_ct.nii.gz``: float32 coarse CT in HU (within the [-200, 800] window) on the
  coarse grid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from absl import flags, logging

from fedsim_tf.data.labels import MMWHS_TABLE, encode_labels
from fedsim_tf.data.nifti import write_nifti
from fedsim_tf.intensity import unit_to_hu
from fedsim_tf.models.generative_model import GeneratorRun
from fedsim_tf.options import CommonConfig, common_config_from_flags
from fedsim_tf.stages import inputs
from fedsim_tf.training.progress import Progress

FLAGS = flags.FLAGS

STAGE = "sample"


@dataclass(frozen=True)
class SampleConfig:
    """Settings of the sample stage."""

    common: CommonConfig
    num_samples: int = 20
    generator: str = "pretrain"


def config_from_flags() -> SampleConfig:
    """Read the sample flags."""
    return SampleConfig(common=common_config_from_flags(), num_samples=FLAGS.num_samples, generator=FLAGS.generator)


def write_samples(run_dir: GeneratorRun, out_dir: str, seed: int, count: int) -> list[str]:
    """Draw ``count`` samples (codes seeded by ``seed``) from a finished pre-training run and write them
    under ``out_dir``; returns the written label paths."""
    model = run_dir.load_model(needed_by=f"--stage={STAGE}")
    gaussian_path = run_dir.require_gaussian(needed_by=f"--stage={STAGE}")

    from fedsim_tf.training.pretrained import PretrainedModel, sample_codes  # TensorFlow loads here

    pretrained = PretrainedModel(run_dir, model)
    codes = sample_codes(gaussian_path, seed, count)
    logging.info("sample: %d samples from the pretrain checkpoint of step %d -> %s", count, pretrained.step, out_dir)
    progress = Progress(STAGE, count)
    written = []
    for index in range(count):
        generated = pretrained.render(codes[index : index + 1])
        labels = encode_labels(generated.labels[0].numpy(), MMWHS_TABLE)
        hu = unit_to_hu(np.clip(generated.ct[0].numpy(), -1.0, 1.0)).astype(np.float32)
        stem = os.path.join(out_dir, f"sample_{index:04d}")
        write_nifti(f"{stem}_label.nii.gz", labels, model.label_grid, dtype=np.uint16)
        write_nifti(f"{stem}_coarse_ct.nii.gz", hu, model.coarse_grid, dtype=np.float32)
        written.append(f"{stem}_label.nii.gz")
        progress.update(index + 1)
    return written


def run(config: SampleConfig) -> list[str]:
    """The stage: the pre-training run of this fold, label sizes and seed -> ``<work_dir>/samples/<run>/``."""
    run_dir = GeneratorRun(config.common.work_dir, inputs.training_set(inputs.plan_sites(config.common), config.common),
                           config.generator)
    out_dir = os.path.join(config.common.work_dir, "samples", run_dir.training_set.name)
    return write_samples(run_dir, out_dir, config.common.seed, config.num_samples)
