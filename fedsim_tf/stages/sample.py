"""Stage ``sample``: draw new hearts from the pre-trained shape/material model.

``python -m fedsim_tf.main --stage=sample --num_samples=20``

Reads ``<work_dir>/pretrain/`` (``model.json``, the latest checkpoint, ``latent_gaussian.npz``),
draws ``z`` from the fitted Gaussian (seeded by ``--seed``), projects each draw onto the unit ball
(the region the generators were trained on), and writes per sample, atomically, under
``<work_dir>/samples/``:

* ``sample_NNNN_label.nii.gz``: uint16 label map with MM-WHS codes (205, 420, 500, 550, 600, 820,
  850; 0 background) on the pre-training label grid (its RAS+ affine in mm);
* ``sample_NNNN_coarse_ct.nii.gz``: float32 coarse CT in HU (within the [-200, 800] window) on the
  coarse grid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from absl import flags, logging

from fedsim_tf.anatomy import INDEX_TO_MMWHS_CODE
from fedsim_tf.data.nifti import write_nifti
from fedsim_tf.errors import UserInputError
from fedsim_tf.options import CommonConfig, common_config_from_flags
from fedsim_tf.physics.ct_simulator import normalised_to_hu
from fedsim_tf.shape.shape_op import ShapeModel
from fedsim_tf.shape.ssm import StatisticalShapeModel, default_ssm
from fedsim_tf.stages import pretrain
from fedsim_tf.training.checkpoints import StageCheckpoint
from fedsim_tf.training.glo import project_to_unit_ball
from fedsim_tf.training.latent_gaussian import LatentGaussian
from fedsim_tf.training.progress import Progress

flags.DEFINE_integer("num_samples", 20, "sample: number of label maps + coarse CT volumes to write (paper: 20).",
                     lower_bound=1)

FLAGS = flags.FLAGS

CODE_LUT = np.array([0] + [INDEX_TO_MMWHS_CODE[i] for i in range(1, len(INDEX_TO_MMWHS_CODE) + 1)], dtype=np.uint16)
"""Label index 0..7 -> MM-WHS code."""


@dataclass(frozen=True)
class SampleConfig:
    """Settings of the sample stage."""

    common: CommonConfig
    num_samples: int = 20

    @property
    def out_dir(self) -> str:
        return os.path.join(self.common.work_dir, "samples")


def config_from_flags() -> SampleConfig:
    """Read the sample flags."""
    return SampleConfig(common=common_config_from_flags(), num_samples=FLAGS.num_samples)


def saved_shape_model(record: str) -> ShapeModel:
    """The shape model ``model.json`` names: ``default`` or a ``.npz`` path."""
    if record == "default":
        return default_ssm()
    if not os.path.isfile(record):
        raise UserInputError(f"{record}: the shape model used for pre-training is missing")
    return StatisticalShapeModel.load(record)


def write_samples(config: SampleConfig, ssm: ShapeModel) -> list[str]:
    """Draw and write ``config.num_samples`` samples; returns the written label paths."""
    work_dir = config.common.work_dir
    model = pretrain.load_generative_model(work_dir)
    gaussian_file = pretrain.gaussian_path(work_dir)
    if not os.path.isfile(gaussian_file):
        raise UserInputError(f"{gaussian_file}: missing; let --stage=pretrain finish first")
    shape_generator, material_generator, simulator = model.build(ssm, config.common.seed)
    checkpoint = StageCheckpoint(
        pretrain.checkpoint_dir(work_dir), shape_generator=shape_generator, material_generator=material_generator
    )
    if checkpoint.latest is None:
        raise UserInputError(f"{pretrain.checkpoint_dir(work_dir)}: no pretrain checkpoint")
    step = checkpoint.restore_latest()
    gaussian = LatentGaussian.load(gaussian_file)
    codes = project_to_unit_ball(gaussian.sample(np.random.default_rng([config.common.seed, 0x5A]),
                                                 config.num_samples).astype(np.float32))
    logging.info("sample: %d samples from the pretrain checkpoint of step %d -> %s", config.num_samples, step,
                 config.out_dir)
    coarse_grid = model.coarse_grid
    progress = Progress("sample", config.num_samples)
    written = []
    for index in range(config.num_samples):
        code = codes[index : index + 1]
        generated = simulator(shape_generator(code), material_generator(code))
        labels = CODE_LUT[generated.labels[0].numpy()]
        hu = normalised_to_hu(tf.clip_by_value(generated.ct[0], -1.0, 1.0).numpy()).astype(np.float32)
        stem = os.path.join(config.out_dir, f"sample_{index:04d}")
        write_nifti(f"{stem}_label.nii.gz", labels, model.label_grid, dtype=np.uint16)
        write_nifti(f"{stem}_coarse_ct.nii.gz", hu, coarse_grid, dtype=np.float32)
        written.append(f"{stem}_label.nii.gz")
        progress.update(index + 1)
    return written


def run(config: SampleConfig) -> list[str]:
    """The stage: rebuild the pre-trained model and write the samples."""
    return write_samples(config, saved_shape_model(pretrain.load_generative_model(config.common.work_dir).ssm))
