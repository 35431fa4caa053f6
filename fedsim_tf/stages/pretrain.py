"""Stage ``pretrain``: GLO pre-training of the shape and material generators (paper Sec. 2.2).

``python -m fedsim_tf.main --stage=pretrain [--flagfile=flags/paper.cfg]``

Data: the labelled training split (fold ``--fold``, ``--label_size``) of **every** site, pooled
(``G_S`` and ``G_M`` model shapes and materials across sites, Sec. 2.3); each volume gets its own
latent code. See :mod:`fedsim_tf.training.glo` for the losses and optimisers.

Label grid of the generated shapes: the cases' grid shape and spacing (heart-centred crops), centred
on the SSM mean shape's centre, so a generated mask and a real mask are compared voxel by voxel
in the same heart-centred frame. Material/coarse CT grid: its ``--coarse_size`` block-mean grid.

Outputs under ``<work_dir>/pretrain/``: ``checkpoints/`` (generators, codes, optimisers; a rerun
resumes from the latest), ``model.json`` (what ``--stage=sample`` needs to rebuild the generators;
a rerun with different model settings is refused), ``ssm.npz`` (with ``--ssm=build``),
``latent_gaussian.npz`` (Ledoit-Wolf Gaussian of the codes, written when training ends).
TensorBoard: ``<work_dir>/logs/pretrain`` (losses, IoU, learning rates, middle slices; per site).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import flags, logging

from fedsim_tf.atomic import write_json_atomic
from fedsim_tf.data.preprocess import coarse_grid
from fedsim_tf.errors import UserInputError
from fedsim_tf.grid import Grid
from fedsim_tf.losses.generation import PERCEPTUAL_SPECS_HELP, PerceptualLoss, perceptual_backbone
from fedsim_tf.models.generators import ShapeBounds, build_material_generator, build_shape_generator
from fedsim_tf.options import CommonConfig, common_config_from_flags
from fedsim_tf.physics import materials
from fedsim_tf.physics.ct_simulator import CTSimulator, ScannerSettings
from fedsim_tf.shape.fitting import fit_ssm_from_labels
from fedsim_tf.shape.ssm import StatisticalShapeModel, default_ssm
from fedsim_tf.shape.shape_op import FiniteDifferenceSteps, ShapeModel, ShapeRenderer
from fedsim_tf.stages import inputs
from fedsim_tf.training.checkpoints import StageCheckpoint
from fedsim_tf.training.glo import GLOSettings, GLOTargets, GLOTrainer
from fedsim_tf.training.latent_gaussian import LatentGaussian
from fedsim_tf.training.progress import Progress
from fedsim_tf.training.summaries import Summaries, middle_slice_image

flags.DEFINE_integer("latent_dim", 16, "pretrain: size of the GLO latent codes.", lower_bound=1)
flags.DEFINE_integer("pretrain_steps", 300, "pretrain: optimisation steps.", lower_bound=0)
flags.DEFINE_integer("pretrain_batch", 2, "pretrain: volumes per step.", lower_bound=1)
flags.DEFINE_float("lr_shape", 1e-3, "pretrain: Adam learning rate of the shape generator G_S.", lower_bound=0.0)
flags.DEFINE_float("lr_material", 1e-3, "pretrain: Adam learning rate of the material generator G_M.",
                   lower_bound=0.0)
flags.DEFINE_float("lr_latent", 1e-2, "pretrain: RMSprop learning rate of the latent codes.", lower_bound=0.0)
flags.DEFINE_string("perceptual", "auto", f"pretrain: perceptual-loss backbone, {PERCEPTUAL_SPECS_HELP}.")
flags.DEFINE_float("perceptual_weight", 1.0, "pretrain: weight of the perceptual loss.", lower_bound=0.0)
flags.DEFINE_string("ssm", "default", "Shape model: default (built in), build (fit one to the sites' labelled "
                    "training volumes) or a .npz file.")
flags.DEFINE_float("mode_limit", 3.0, "G_S: SSM weights lie within +- this many standard deviations.",
                   lower_bound=0.0)
flags.DEFINE_float("max_rotation_deg", 15.0, "G_S: rotation-vector components within +- degrees.", lower_bound=0.0)
flags.DEFINE_float("max_translation_mm", 20.0, "G_S: translations within +- mm.", lower_bound=0.0)
flags.DEFINE_float("max_log_scale", 0.15, "G_S: log of the isotropic scale within +- this.", lower_bound=0.0)
flags.DEFINE_float("fd_step_mode", 0.25, "Finite-difference half-step of SSM weights (std units).", lower_bound=0.0)
flags.DEFINE_float("fd_step_rotation_deg", 2.0, "Finite-difference half-step of rotations (degrees).",
                   lower_bound=0.0)
flags.DEFINE_float("fd_step_translation_mm", 0.0, "Finite-difference half-step of translations (mm); 0 = one voxel.",
                   lower_bound=0.0)
flags.DEFINE_float("fd_step_log_scale", 0.02, "Finite-difference half-step of the log-scale.", lower_bound=0.0)
flags.DEFINE_integer("ct_views", 48, "CT simulator: projections over a full circle.", lower_bound=1)
flags.DEFINE_float("ct_sid_mm", 750.0, "CT simulator: source-isocentre distance (mm).", lower_bound=0.0)
flags.DEFINE_float("ct_sdd_mm", 1200.0, "CT simulator: source-detector distance (mm).", lower_bound=0.0)
flags.DEFINE_float("ct_kev", materials.REFERENCE_KEV, "CT simulator: effective energy (keV) of the HU calibration.")
flags.DEFINE_integer("checkpoint_every", 50, "pretrain: steps between checkpoints.", lower_bound=1)
flags.DEFINE_integer("log_every", 10, "pretrain: steps between TensorBoard scalars (images: 10x rarer).",
                     lower_bound=1)

FLAGS = flags.FLAGS

STAGE = "pretrain"
PERCEPTUAL_IMAGE_SIZE = 32
PERCEPTUAL_SLICES = 4


@dataclass(frozen=True)
class PretrainConfig:
    """Settings of the pretrain stage (flags above; ``common`` holds the shared ones)."""

    common: CommonConfig
    latent_dim: int = 16
    steps: int = 300
    glo: GLOSettings = GLOSettings()
    perceptual: str = "auto"
    ssm: str = "default"
    bounds: ShapeBounds = ShapeBounds()
    fd_steps: FiniteDifferenceSteps = FiniteDifferenceSteps()
    scanner: ScannerSettings = ScannerSettings()
    checkpoint_every: int = 50
    log_every: int = 10

    @property
    def stage_dir(self) -> str:
        return os.path.join(self.common.work_dir, STAGE)

    @property
    def log_dir(self) -> str:
        return os.path.join(self.common.work_dir, "logs", STAGE)


def _positive(name: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise UserInputError(f"--{name}={value}: must be positive")
    return value


def config_from_flags() -> PretrainConfig:
    """Read and check the pretrain flags; raises :class:`UserInputError` naming the bad flag."""
    common = common_config_from_flags()
    for name in ("mode_limit", "max_rotation_deg", "max_translation_mm", "max_log_scale", "fd_step_mode",
                 "fd_step_rotation_deg", "fd_step_log_scale", "ct_sid_mm", "ct_sdd_mm"):
        _positive(name, FLAGS[name].value)
    if FLAGS.ct_sid_mm >= FLAGS.ct_sdd_mm:
        raise UserInputError(f"--ct_sid_mm={FLAGS.ct_sid_mm} must be smaller than --ct_sdd_mm={FLAGS.ct_sdd_mm}")
    low, high = materials.ENERGY_RANGE_KEV
    if not low <= FLAGS.ct_kev <= high:
        raise UserInputError(f"--ct_kev={FLAGS.ct_kev}: outside the material model's range [{low}, {high}] keV")
    if FLAGS.ssm not in ("default", "build") and not os.path.isfile(FLAGS.ssm):
        raise UserInputError(f"--ssm={FLAGS.ssm}: expected default, build or an existing .npz file")
    if FLAGS.perceptual not in ("vgg19", "none", "auto") and not os.path.isfile(FLAGS.perceptual):
        raise UserInputError(f"--perceptual={FLAGS.perceptual}: no such weights file (expected {PERCEPTUAL_SPECS_HELP})")
    if common.coarse_size % 4:
        raise UserInputError(f"--coarse_size={common.coarse_size}: the material generator needs a multiple of 4")
    return PretrainConfig(
        common=common,
        latent_dim=FLAGS.latent_dim,
        steps=FLAGS.pretrain_steps,
        glo=GLOSettings(
            seed=common.seed, batch_size=FLAGS.pretrain_batch, lr_shape=FLAGS.lr_shape,
            lr_material=FLAGS.lr_material, lr_latent=FLAGS.lr_latent, perceptual_weight=FLAGS.perceptual_weight,
        ),
        perceptual=FLAGS.perceptual,
        ssm=FLAGS.ssm,
        bounds=ShapeBounds(
            mode_limit=FLAGS.mode_limit, rotation_rad=math.radians(FLAGS.max_rotation_deg),
            translation_mm=FLAGS.max_translation_mm, log_scale=FLAGS.max_log_scale,
        ),
        fd_steps=FiniteDifferenceSteps(
            mode_std=FLAGS.fd_step_mode, rotation_rad=math.radians(FLAGS.fd_step_rotation_deg),
            translation_mm=FLAGS.fd_step_translation_mm or None, log_scale=FLAGS.fd_step_log_scale,
        ),
        scanner=ScannerSettings(views=FLAGS.ct_views, source_isocenter_mm=FLAGS.ct_sid_mm,
                                source_detector_mm=FLAGS.ct_sdd_mm, kev=FLAGS.ct_kev),
        checkpoint_every=FLAGS.checkpoint_every,
        log_every=FLAGS.log_every,
    )


# --------------------------------------------------------------------------------------------
# The generative model as saved in model.json (shared with --stage=sample).


@dataclass(frozen=True)
class GenerativeModel:
    """Everything needed to rebuild ``G_S``, ``G_M`` and the simulator.

    Attributes:
        latent_dim: code size.
        n_modes: SSM modes (``G_S`` outputs ``n_modes + 7``).
        bounds: shape-parameter ranges.
        label_grid: the generated label maps' grid (world RAS+ mm).
        coarse_size: material/coarse CT grid edge.
        scanner: CT simulator settings.
        fd_steps: finite-difference steps of the shape op.
        ssm: ``default``, or the path of the ``.npz`` shape model used.
    """

    latent_dim: int
    n_modes: int
    bounds: ShapeBounds
    label_grid: Grid
    coarse_size: int
    scanner: ScannerSettings
    fd_steps: FiniteDifferenceSteps
    ssm: str

    @property
    def coarse_grid(self) -> Grid:
        return coarse_grid(self.label_grid, self.coarse_size)

    def to_json(self) -> dict[str, Any]:
        return {
            "latent_dim": self.latent_dim,
            "n_modes": self.n_modes,
            "bounds": dataclasses.asdict(self.bounds),
            "label_grid": {"shape": list(self.label_grid.shape), "affine": self.label_grid.affine.tolist()},
            "coarse_size": self.coarse_size,
            "scanner": dataclasses.asdict(self.scanner),
            "fd_steps": dataclasses.asdict(self.fd_steps),
            "ssm": self.ssm,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "GenerativeModel":
        return cls(
            latent_dim=int(data["latent_dim"]),
            n_modes=int(data["n_modes"]),
            bounds=ShapeBounds(**data["bounds"]),
            label_grid=Grid(tuple(data["label_grid"]["shape"]), np.asarray(data["label_grid"]["affine"])),
            coarse_size=int(data["coarse_size"]),
            scanner=ScannerSettings(**data["scanner"]),
            fd_steps=FiniteDifferenceSteps(**data["fd_steps"]),
            ssm=str(data["ssm"]),
        )

    def build(self, ssm: ShapeModel, seed: int) -> tuple[keras.Model, keras.Model, CTSimulator]:
        """``(G_S, G_M, simulator)`` with weights initialised from ``seed``."""
        keras.utils.set_random_seed(seed)
        shape_generator = build_shape_generator(self.latent_dim, self.n_modes, self.bounds)
        material_generator = build_material_generator(
            self.latent_dim, self.coarse_size, materials.water_mu(self.scanner.kev)
        )
        coarse = self.coarse_grid
        simulator = CTSimulator(
            ShapeRenderer(ssm, self.label_grid, self.fd_steps), coarse.shape, tuple(coarse.spacing_zyx), self.scanner
        )
        return shape_generator, material_generator, simulator


def model_path(work_dir: str) -> str:
    return os.path.join(work_dir, STAGE, "model.json")


def gaussian_path(work_dir: str) -> str:
    return os.path.join(work_dir, STAGE, "latent_gaussian.npz")


def checkpoint_dir(work_dir: str) -> str:
    return os.path.join(work_dir, STAGE, "checkpoints")


def load_generative_model(work_dir: str) -> GenerativeModel:
    """Read ``<work_dir>/pretrain/model.json``; UserInputError when there is no finished pre-training."""
    path = model_path(work_dir)
    if not os.path.isfile(path):
        raise UserInputError(f"--work_dir={work_dir}: no pre-trained model ({path} missing); run --stage=pretrain first")
    with open(path) as handle:
        return GenerativeModel.from_json(json.load(handle))


# --------------------------------------------------------------------------------------------
# Inputs.


def training_targets(sites: list[Any], common: CommonConfig) -> tuple[GLOTargets, Grid]:
    """Pool the labelled training volumes of every site.

    Returns:
        The targets and the grid of the first volume (all must share shape and spacing).

    Raises:
        UserInputError: no labelled training volume, or volumes on different grids.
    """
    masks, labels, coarse, names, ids = [], [], [], [], []
    first: Grid | None = None
    for site in sites:
        for case in inputs.fold_cases(site, common)["train_labelled"]:
            case_id = case.case_id
            if first is None:
                first = case.grid
            elif case.grid.shape != first.shape or not np.allclose(case.grid.spacing_zyx, first.spacing_zyx):
                raise UserInputError(
                    f"site {site.name}, case {case_id}: grid {case.grid.shape} / {case.grid.spacing_zyx} mm differs "
                    f"from {first.shape} / {first.spacing_zyx} mm"
                )
            masks.append(np.asarray(case.label > 0, dtype=np.float32))
            labels.append(np.asarray(case.label, dtype=np.uint8))
            coarse.append(np.asarray(case.coarse, dtype=np.float32))
            names.append(site.name)
            ids.append(case_id)
    if first is None:
        raise UserInputError("pretrain: no labelled training volume in any site (check --data_dir and --label_size)")
    return GLOTargets(np.stack(masks), np.stack(labels), np.stack(coarse), tuple(names), tuple(ids)), first


def generation_grid(case_grid: Grid, ssm: ShapeModel) -> Grid:
    """The cases' grid shape and spacing, axis-aligned RAS, centred on the SSM mean's centre."""
    shape = case_grid.shape
    fov = tuple(float(n * s) for n, s in zip(shape, case_grid.spacing_zyx))
    return Grid.centred(shape, fov, tuple(float(c) for c in ssm.mean.centre()))


def shape_model(spec: str, sites: list[Any], common: CommonConfig, stage_dir: str) -> tuple[ShapeModel, str]:
    """Resolve ``--ssm``: the shape model and how ``model.json`` records it (``default`` or a path)."""
    if spec == "default":
        return default_ssm(), "default"
    if spec == "build":
        path = os.path.join(stage_dir, "ssm.npz")
        if not os.path.isfile(path):
            cases = [case for site in sites for case in inputs.fold_cases(site, common)["train_labelled"]]
            if len(cases) < 3:
                raise UserInputError(f"--ssm=build needs at least 3 labelled training volumes, found {len(cases)}")
            ssm, report = fit_ssm_from_labels(
                [case.label for case in cases], [case.grid for case in cases], n_modes=min(14, len(cases) - 1)
            )
            logging.info(
                "built an SSM with %d modes from %d volumes: mean surface distance %.2f mm, "
                "leave-one-out error %.2f mm",
                report.n_modes, len(cases), float(np.mean(report.surface_distance_mm)),
                float(np.mean(report.loo_error_mm)),
            )
            ssm.save(path)
        return StatisticalShapeModel.load(path), os.path.abspath(path)
    return StatisticalShapeModel.load(spec), os.path.abspath(spec)


# --------------------------------------------------------------------------------------------
# Training.


def _log_images(trainer: GLOTrainer, summaries: Summaries, step: int) -> None:
    targets = trainer.targets
    for site in dict.fromkeys(targets.sites):
        index = targets.sites.index(site)
        generated = trainer.render(tf.gather(trainer.latents, [index]))
        summaries.images(
            step,
            {
                "labels/generated": middle_slice_image(generated.labels[0].numpy(), (0, 7)),
                "labels/real": middle_slice_image(targets.labels[index], (0, 7)),
                "coarse_ct/generated": middle_slice_image(generated.ct[0].numpy(), (-1, 1)),
                "coarse_ct/real": middle_slice_image(targets.coarse[index], (-1, 1)),
            },
            site=site,
        )


def _log_scalars(
    trainer: GLOTrainer, summaries: Summaries, step: int, indices: np.ndarray, losses: dict[str, np.ndarray]
) -> None:
    sites = np.array(trainer.targets.sites)[indices]
    per_site = {None: np.ones(len(indices), dtype=bool)} | {s: sites == s for s in dict.fromkeys(sites)}
    for site, keep in per_site.items():
        values = {name: float(np.mean(value[keep])) for name, value in losses.items()}
        values["iou"] = 1.0 - values["iou_loss"]
        summaries.scalars(step, values | (trainer.learning_rates() if site is None else {}), site=site)


def _check_model_file(path: str, model: GenerativeModel) -> None:
    if os.path.isfile(path):
        with open(path) as handle:
            saved = json.load(handle)
        current = json.loads(json.dumps(model.to_json()))
        changed = sorted(key for key in current if saved.get(key) != current[key])
        if changed:
            raise UserInputError(
                f"{path}: an earlier pretrain run used different settings ({', '.join(changed)}); "
                "use another --work_dir or delete that run"
            )
    write_json_atomic(path, model.to_json())


def train(config: PretrainConfig, targets: GLOTargets, case_grid: Grid, ssm: ShapeModel, ssm_record: str) -> GLOTrainer:
    """Pre-train (resuming from the latest checkpoint) and fit the code Gaussian.

    Args:
        config: the stage settings.
        targets: the pooled labelled training volumes.
        case_grid: grid of the cases (shape and spacing of the generated label maps).
        ssm: the shape model.
        ssm_record: how ``model.json`` names the shape model (``default`` or a ``.npz`` path).

    Returns:
        The trainer after the last step.
    """
    common = config.common
    tf.config.experimental.enable_op_determinism()
    model = GenerativeModel(
        latent_dim=config.latent_dim, n_modes=int(np.asarray(ssm.stddevs).shape[0]), bounds=config.bounds,
        label_grid=generation_grid(case_grid, ssm), coarse_size=common.coarse_size, scanner=config.scanner,
        fd_steps=config.fd_steps, ssm=ssm_record,
    )
    if targets.coarse.shape[1:] != model.coarse_grid.shape:
        raise UserInputError(
            f"--coarse_size={common.coarse_size}: the cases' coarse volumes are {targets.coarse.shape[1:]}"
        )
    _check_model_file(model_path(common.work_dir), model)
    shape_generator, material_generator, simulator = model.build(ssm, common.seed)
    backbone = perceptual_backbone(config.perceptual, PERCEPTUAL_IMAGE_SIZE)
    logging.info("%s", backbone.description)
    perceptual = (
        None if backbone.model is None else PerceptualLoss(backbone.model, image_size=PERCEPTUAL_IMAGE_SIZE,
                                                           slices=min(PERCEPTUAL_SLICES, common.coarse_size))
    )
    trainer = GLOTrainer(shape_generator, material_generator, simulator, targets, config.glo, perceptual)
    checkpoint = StageCheckpoint(checkpoint_dir(common.work_dir), **trainer.trackables())
    start = checkpoint.restore_latest()
    logging.info(
        "pretrain: %d labelled training volumes from %d site(s), label grid %s, coarse %d^3, step %d/%d",
        len(targets), len(set(targets.sites)), model.label_grid.shape, common.coarse_size, start, config.steps,
    )
    summaries = Summaries(config.log_dir)
    progress = Progress(STAGE, config.steps, start=start)
    for step in range(start, config.steps):
        indices, losses = trainer.train_step(step)
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            _log_scalars(trainer, summaries, done, indices, losses)
        if done % (10 * config.log_every) == 0 or done == config.steps:
            _log_images(trainer, summaries, done)
        if done % config.checkpoint_every == 0 or done == config.steps:
            checkpoint.save(done)
        progress.update(done, **{name: float(np.mean(value)) for name, value in losses.items()})
    summaries.flush()
    final = trainer.evaluate()
    logging.info(
        "pretrain: over all %d training volumes: mean IoU %.3f (IoU loss %.3f), coarse-CT MSE %.4f",
        len(targets), 1.0 - float(np.mean(final["iou_loss"])), float(np.mean(final["iou_loss"])),
        float(np.mean(final["mse"])),
    )
    gaussian = LatentGaussian.fit(trainer.latents.numpy())
    gaussian.save(gaussian_path(common.work_dir))
    logging.info("pretrain: done; latent Gaussian (Ledoit-Wolf shrinkage %.3f) in %s", gaussian.shrinkage,
                 gaussian_path(common.work_dir))
    return trainer


def run(config: PretrainConfig) -> GLOTrainer:
    """The stage: load the sites, resolve the SSM, pre-train."""
    sites = inputs.load_sites(config.common)
    targets, case_grid = training_targets(sites, config.common)
    ssm, record = shape_model(config.ssm, sites, config.common, config.stage_dir)
    return train(config, targets, case_grid, ssm, record)
