"""Stage ``synthesize``: labelled synthetic CT volumes of one site (paper Sec. 2.1, the complete generative
process; Sec. 3: 20 synthetic volumes per experiment).

``python -m fedsim_tf.main --stage=synthesize --site=CT20 --num_samples=20 [--material=learned|fixmat]
[--shape=learned|random] [--blend=none|alpha|poisson]``

Codes ``z`` are drawn from the latent Gaussian of the ``--generator`` run (``pretrain``: Ours-Pre,
``semi``: Ours-Full, ``federated``: Ours-Sim-FL) of the same ``--fold``, label sizes, ``--seed`` and
``--single_site``; shapes and materials come from its ``G_S`` and ``G_M`` (or the variants of
:mod:`fedsim_tf.synthesis.synthesizer`), and the site's GAN turns every slice into the final CT: its GAN of
``--stage=pretrain_gan`` (same ``--material``) for ``pretrain`` and ``semi``, its own GAN of the federated
run for ``federated`` (learned material only).

Output: ``<work_dir>/synthesize/<run>/<site>-<generator>-<material>-<shape>-<blend>/`` in the MM-WHS layout, so that
``--stage=segment --mode=finetune --synthetic_dir=<that folder>`` reads it unchanged:

* ``synth_0001_image.nii.gz`` (int16 HU) and ``synth_0001_label.nii.gz`` (uint16 MM-WHS codes 205 ... 850)
  on the same grid and affine (the pre-training label grid, RAS+ mm);
* ``montage.png``: axial / coronal / sagittal slices of the first volumes with label contours;
* ``manifest.json``: site, fold, training set, variant, seed, sizes, checkpoint steps, wall time.

The folder is written under a temporary name and renamed when complete (a crash leaves no half set).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass

import numpy as np
from absl import flags, logging

from fedsim_tf.atomic import write_json_atomic
from fedsim_tf.data.labels import MMWHS_TABLE, encode_labels
from fedsim_tf.data.nifti import write_nifti
from fedsim_tf.errors import UserInputError
from fedsim_tf.intensity import unit_to_hu
from fedsim_tf.models.generative_model import GAN_STAGE_OF_GENERATOR, GANRun, GeneratorRun
from fedsim_tf.options import CommonConfig, common_config_from_flags
from fedsim_tf.stages import inputs
from fedsim_tf.synthesis.variants import BLENDS, SHAPES

MANIFEST_FORMAT = "fedsim-synthetic-set-v1"
MONTAGE_VOLUMES = 4

flags.DEFINE_enum("shape", "learned", list(SHAPES), "synthesize: heart shapes from G_S (learned) or drawn uniformly "
                  "within the shape-parameter ranges (random; paper Table 2).")
flags.DEFINE_enum("blend", "none", list(BLENDS), "synthesize: the GAN's volume (none), or the simulated heart blended "
                  "onto it (alpha, poisson; paper Table 2).")
flags.DEFINE_integer("synth_batch", 16, "synthesize: slices per generator call.", lower_bound=1)

FLAGS = flags.FLAGS

STAGE = "synthesize"


@dataclass(frozen=True)
class SynthesizeConfig:
    """Settings of the synthesize stage."""

    common: CommonConfig
    num_samples: int = 20
    generator: str = "pretrain"
    material: str = "learned"
    shape: str = "learned"
    blend: str = "none"
    slice_batch: int = 16

    @property
    def variant(self) -> str:
        return f"{self.generator}-{self.material}-{self.shape}-{self.blend}"


def config_from_flags() -> SynthesizeConfig:
    """Read the synthesize flags."""
    return SynthesizeConfig(common=common_config_from_flags(), num_samples=FLAGS.num_samples, generator=FLAGS.generator,
                            material=FLAGS.material, shape=FLAGS.shape, blend=FLAGS.blend,
                            slice_batch=FLAGS.synth_batch)


def output_dir(common: CommonConfig, run_name: str, site: str, variant: str) -> str:
    """``<work_dir>/synthesize/<run>/<site>-<variant>``."""
    return os.path.join(common.work_dir, STAGE, run_name, f"{site}-{variant}")


def run(config: SynthesizeConfig) -> str:
    """Write the synthetic set; returns its folder."""
    common = config.common
    started = time.monotonic()
    plans = inputs.plan_sites(common)
    site = inputs.pick_site(plans, common.site).name
    training_set = inputs.training_set(plans, common)
    generator_run = GeneratorRun(common.work_dir, training_set, config.generator)
    gan_stage = GAN_STAGE_OF_GENERATOR[config.generator]
    if gan_stage == "federated" and config.material != "learned":
        raise UserInputError(f"--generator=federated --material={config.material}: the federated stage trains "
                             "learned-material GANs only; use --material=learned")
    gan_run = GANRun(common.work_dir, training_set, site, config.material, stage=gan_stage)
    needed_by = f"--stage={STAGE}"
    model = generator_run.load_model(needed_by)
    gaussian_path = generator_run.require_gaussian(needed_by)
    gan_settings, image_size = gan_run.load_record(needed_by)
    if image_size != model.label_grid.shape[-1]:
        raise UserInputError(f"{gan_run.record_path}: slices of {image_size}^2, but the label grid is "
                             f"{model.label_grid.shape}; train the GAN again")
    out_dir = output_dir(common, training_set.name, site, config.variant)

    # TensorFlow loads here, once the inputs are checked.
    from fedsim_tf.synthesis.montage import write_montage
    from fedsim_tf.synthesis.synthesizer import Synthesizer
    from fedsim_tf.training.checkpoints import StageCheckpoint
    from fedsim_tf.training.gan import build_gan_models
    from fedsim_tf.training.pretrained import PretrainedModel, sample_codes
    from fedsim_tf.training.progress import Progress

    pretrained = PretrainedModel(generator_run, model)
    generator, _ = build_gan_models(gan_settings, image_size)
    gan_step = StageCheckpoint(gan_run.checkpoint_dir, generator=generator).restore_latest()
    synthesizer = Synthesizer(pretrained, generator, config.material, config.slice_batch)
    codes = sample_codes(gaussian_path, common.seed, config.num_samples)
    params = synthesizer.shape_params(codes, config.shape, np.random.default_rng([common.seed, 0x5E]))
    logging.info("synthesize: %d %s volumes of site %s (%s step %d, GAN step %d) -> %s", config.num_samples,
                 config.variant, site, config.generator, pretrained.step, gan_step, out_dir)
    building = f"{out_dir}.partial-{uuid.uuid4().hex[:8]}"
    progress = Progress(STAGE, config.num_samples)
    previews = []
    try:
        for index in range(config.num_samples):
            volume = synthesizer.volume(codes[index], params[index], config.blend)
            stem = os.path.join(building, f"synth_{index + 1:04d}")
            hu = np.rint(unit_to_hu(np.clip(volume.image, -1.0, 1.0))).astype(np.int16)
            write_nifti(f"{stem}_image.nii.gz", hu, model.label_grid)
            write_nifti(f"{stem}_label.nii.gz", encode_labels(volume.labels, MMWHS_TABLE), model.label_grid,
                        dtype=np.uint16)
            if index < MONTAGE_VOLUMES:
                previews.append((hu, volume.labels))
            progress.update(index + 1)
        write_montage(os.path.join(building, "montage.png"), previews)
        write_json_atomic(os.path.join(building, "manifest.json"), {
            "format": MANIFEST_FORMAT, "site": site, "fold": common.fold, "seed": common.seed,
            "trained_on": training_set.to_json(), "generator": config.generator, "material": config.material,
            "shape": config.shape,
            "blend": config.blend, "num_samples": config.num_samples,
            "label_grid": {"shape": list(model.label_grid.shape), "affine": model.label_grid.affine.tolist()},
            "generator_step": pretrained.step, "gan_step": gan_step, "gan": gan_run.folder,
            "wall_s": round(time.monotonic() - started, 1),
        })
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.replace(building, out_dir)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    logging.info("synthesize: %d volumes in %.1f s -> %s", config.num_samples, time.monotonic() - started, out_dir)
    return out_dir
