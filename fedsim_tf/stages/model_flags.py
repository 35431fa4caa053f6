"""The generative model's record (``G_S``/``G_M`` sizes, shape model, pose ranges, finite differences, CT
simulator): its flags and how a stage that trains ``G_S``/``G_M`` from scratch (``pretrain``,
``federated``) turns them and the labelled training volumes into a
:class:`~fedsim_tf.models.generative_model.GenerativeModel`. Plain Python and NumPy (no TensorFlow).

Label grid of the generated shapes: the cases' grid shape and spacing (heart-centred crops), centred
on the SSM mean shape's centre, so a generated mask and a real mask are compared voxel by voxel
in the same heart-centred frame. Material/coarse CT grid: its ``--coarse_size`` block-mean grid.
``G_S``'s translation and scale ranges are fitted to the training hearts (``--pose_bounds=data``,
:mod:`fedsim_tf.shape.pose_bounds`), so generated hearts can reach adult and paediatric sizes alike.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from absl import flags, logging

from fedsim_tf.data.case import Case
from fedsim_tf.errors import UserInputError
from fedsim_tf.grid import Grid
from fedsim_tf.models.generative_model import GenerativeModel, GeneratorRun, generation_grid
from fedsim_tf.options import CommonConfig
from fedsim_tf.physics import materials
from fedsim_tf.physics.simulated_scanner import SimulatedScanner
from fedsim_tf.shape.fitting import fit_ssm_from_labels
from fedsim_tf.shape.parameters import FiniteDifferenceSteps, ShapeBounds
from fedsim_tf.shape.pose_bounds import data_bounds
from fedsim_tf.shape.ssm import StatisticalShapeModel, default_ssm

flags.DEFINE_integer("latent_dim", 16, "G_S/G_M: size of the GLO latent codes.", lower_bound=1)
flags.DEFINE_string("ssm", "default", "Shape model: default (built in), build (fit one to the sites' labelled "
                    "training volumes) or a .npz file.")
flags.DEFINE_float("mode_limit", 3.0, "G_S: SSM weights lie within +- this many standard deviations.",
                   lower_bound=0.0)
flags.DEFINE_float("max_rotation_deg", 15.0, "G_S: rotation-vector components within +- degrees.", lower_bound=0.0)
flags.DEFINE_enum("pose_bounds", "data", ["data", "fixed"], "G_S: ranges of translation and log-scale: data "
                  "(centred on the poses fitted to the training labels, reaching every training heart plus "
                  "--max_translation_mm / --max_log_scale) or fixed (+- those values about the SSM mean).")
flags.DEFINE_float("max_translation_mm", 20.0, "G_S: translation range, +- mm (with --pose_bounds=data: the margin "
                   "beyond the training hearts).", lower_bound=0.0)
flags.DEFINE_float("max_log_scale", 0.15, "G_S: range of the log of the isotropic scale, +- this (with "
                   "--pose_bounds=data: the margin beyond the training hearts).", lower_bound=0.0)
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

FLAGS = flags.FLAGS


@dataclass(frozen=True)
class ModelConfig:
    """What the generative model's record is made from (flags above)."""

    latent_dim: int = 16
    ssm: str = "default"
    bounds: ShapeBounds = ShapeBounds()
    pose_bounds: str = "data"
    fd_steps: FiniteDifferenceSteps = FiniteDifferenceSteps()
    scanner: SimulatedScanner = SimulatedScanner()


def _positive(name: str) -> float:
    value = FLAGS[name].value
    if not (math.isfinite(value) and value > 0):
        raise UserInputError(f"--{name}={value}: must be positive")
    return value


def model_config_from_flags(common: CommonConfig) -> ModelConfig:
    """Read and check the model flags; raises :class:`UserInputError` naming the bad flag."""
    for name in ("mode_limit", "max_rotation_deg", "max_translation_mm", "max_log_scale", "fd_step_mode",
                 "fd_step_rotation_deg", "fd_step_log_scale", "ct_sid_mm", "ct_sdd_mm"):
        _positive(name)
    if FLAGS.ct_sid_mm >= FLAGS.ct_sdd_mm:
        raise UserInputError(f"--ct_sid_mm={FLAGS.ct_sid_mm} must be smaller than --ct_sdd_mm={FLAGS.ct_sdd_mm}")
    low, high = materials.ENERGY_RANGE_KEV
    if not low <= FLAGS.ct_kev <= high:
        raise UserInputError(f"--ct_kev={FLAGS.ct_kev}: outside the material model's range [{low}, {high}] keV")
    if FLAGS.ssm not in ("default", "build") and not os.path.isfile(FLAGS.ssm):
        raise UserInputError(f"--ssm={FLAGS.ssm}: expected default, build or an existing .npz file")
    if common.coarse_size % 4:
        raise UserInputError(f"--coarse_size={common.coarse_size}: the material generator needs a multiple of 4")
    return ModelConfig(
        latent_dim=FLAGS.latent_dim,
        ssm=FLAGS.ssm,
        bounds=ShapeBounds(
            mode_limit=FLAGS.mode_limit, rotation_rad=math.radians(FLAGS.max_rotation_deg),
            translation_mm=FLAGS.max_translation_mm, log_scale=FLAGS.max_log_scale,
        ),
        pose_bounds=FLAGS.pose_bounds,
        fd_steps=FiniteDifferenceSteps(
            mode_std=FLAGS.fd_step_mode, rotation_rad=math.radians(FLAGS.fd_step_rotation_deg),
            translation_mm=FLAGS.fd_step_translation_mm or None, log_scale=FLAGS.fd_step_log_scale,
        ),
        scanner=SimulatedScanner(views=FLAGS.ct_views, source_isocenter_mm=FLAGS.ct_sid_mm,
                                 source_detector_mm=FLAGS.ct_sdd_mm, kev=FLAGS.ct_kev),
    )


def case_grid(cases: list[tuple[str, Case]], stage: str) -> Grid:
    """The grid shared by every case (shape and spacing; positions differ between crops).

    Raises:
        UserInputError: no case, or cases on different grids.
    """
    if not cases:
        raise UserInputError(f"{stage}: no labelled training volume in any site (check --data_dir and --label_size)")
    first = cases[0][1].grid
    for site, case in cases[1:]:
        if case.grid.shape != first.shape or not np.allclose(case.grid.spacing_zyx, first.spacing_zyx):
            raise UserInputError(
                f"site {site}, case {case.case_id}: grid {case.grid.shape} / {case.grid.spacing_zyx} mm differs "
                f"from {first.shape} / {first.spacing_zyx} mm"
            )
    return first


def shape_model(spec: str, cases: list[tuple[str, Case]], run: GeneratorRun) -> tuple[StatisticalShapeModel, str]:
    """Resolve ``--ssm``: the shape model and how ``model.json`` records it (``default`` or a path).

    ``build`` fits one to the labelled training volumes (once; saved in the run folder).
    """
    if spec == "default":
        return default_ssm(), "default"
    path = run.ssm_path if spec == "build" else spec
    if spec == "build" and not os.path.isfile(path):
        if len(cases) < 3:
            raise UserInputError(f"--ssm=build needs at least 3 labelled training volumes, found {len(cases)}")
        ssm, report = fit_ssm_from_labels([c.label for _, c in cases], [c.grid for _, c in cases],
                                          n_modes=min(14, len(cases) - 1))
        logging.info("built an SSM with %d modes from %d volumes: mean surface distance %.2f mm, leave-one-out "
                     "error %.2f mm", report.n_modes, len(cases), float(np.mean(report.surface_distance_mm)),
                     float(np.mean(report.loo_error_mm)))
        ssm.save(path)
    return StatisticalShapeModel.load(path), os.path.abspath(path)


def generative_model(config: ModelConfig, coarse_size: int, cases: list[tuple[str, Case]], run: GeneratorRun,
                     stage: str) -> tuple[GenerativeModel, StatisticalShapeModel]:
    """The record of a model trained from scratch on ``cases`` (``(site, case)`` labelled training volumes):
    shape model (``--ssm``), generation grid, pose ranges (``--pose_bounds``) and the simulator's settings.

    Returns:
        ``(model, ssm)``: the record and the shape model it names.

    Raises:
        UserInputError: no case, cases on different grids, or a shape model that cannot be built.
    """
    ssm, record = shape_model(config.ssm, cases, run)
    label_grid = generation_grid(case_grid(cases, stage), ssm)
    bounds = config.bounds
    if config.pose_bounds == "data":
        bounds = data_bounds(np.stack([case.label > 0 for _, case in cases]), label_grid, ssm, config.bounds)
        logging.info("%s: pose ranges from the %d training hearts: translation (%s) +- %.1f mm, log-scale "
                     "%.3f +- %.3f", stage, len(cases), ", ".join(f"{t:.1f}" for t in bounds.translation_centre_mm),
                     bounds.translation_mm, bounds.log_scale_centre, bounds.log_scale)
    model = GenerativeModel(
        latent_dim=config.latent_dim, n_modes=int(np.asarray(ssm.stddevs).shape[0]), bounds=bounds,
        label_grid=label_grid, coarse_size=coarse_size, scanner=config.scanner,
        fd_steps=config.fd_steps, ssm=record,
    )
    return model, ssm
