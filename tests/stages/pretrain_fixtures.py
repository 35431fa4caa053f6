"""Tiny GLO pre-training inputs shared by the pretrain and sample tests: hearts of the default SSM
rendered at known parameters on a 16^3 grid (10 mm voxels), coarse 4^3 or 8^3 targets."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from fedsim_tf.data.preprocess import area_downsample
from fedsim_tf.grid import Grid
from fedsim_tf.models.generative_model import GenerativeModel, GeneratorRun, TrainingSet, generation_grid
from fedsim_tf.physics.simulated_scanner import SimulatedScanner
from fedsim_tf.shape.parameters import FiniteDifferenceSteps, ShapeBounds
from fedsim_tf.shape.shape_op import ShapeRenderer
from fedsim_tf.shape.ssm import default_ssm
from fedsim_tf.training import pretraining
from fedsim_tf.training.glo import GLOTargets, GLOTrainer
from fedsim_tf.training.glo_settings import GLOSettings

CASE_GRID = Grid.centred(16, 160.0, (3.0, -2.0, 5.0))
SEED = 7


def tiny_targets(coarse_size: int, count: int = 3) -> GLOTargets:
    """``count`` real hearts: SSM weights/translations away from the mean, blood bright (0.5), rest -0.6."""
    ssm = default_ssm()
    renderer = ShapeRenderer(ssm, generation_grid(CASE_GRID, ssm))
    params = np.zeros((3, 21))
    params[0, 0] = 1.5
    params[1, 1] = -1.5
    params[2, 17] = 8.0
    labels = renderer.labels(params[:count])
    image = np.where(labels > 0, 0.5, -0.6).astype(np.float32)
    return GLOTargets(
        masks=(labels > 0).astype(np.float32),
        labels=labels,
        coarse=np.stack([area_downsample(v, coarse_size) for v in image]),
        sites=("site_a", "site_b", "site_a")[:count],
        case_ids=tuple(f"case_{i}" for i in range(count)),
    )


@dataclass(frozen=True)
class TinyRun:
    """A pre-training run folder and what :func:`fedsim_tf.training.pretraining.train` needs."""

    run: GeneratorRun
    model: GenerativeModel
    settings: GLOSettings

    def train(self, targets: GLOTargets) -> GLOTrainer:
        """Record the model (as the stage does) and pre-train it on ``targets``."""
        self.run.write_model(self.model)
        return pretraining.train(self.run, self.model, targets, default_ssm(), self.settings, "none",
                                 os.path.join(self.run.work_dir, "logs", "pretrain"))


def tiny_run(work_dir: str, coarse_size: int, steps: int, batch_size: int, views: int = 8,
             targets: GLOTargets | None = None) -> TinyRun:
    """A 4-dimensional-code model on :data:`CASE_GRID`'s generation grid; the run is keyed by the
    case ids of ``targets`` (default: three cases of two sites, as :func:`tiny_targets`)."""
    ids = targets.case_ids if targets is not None else tuple(f"case_{i}" for i in range(3))
    sites = targets.sites if targets is not None else ("site_a", "site_b", "site_a")
    labelled = {site: tuple(c for c, s in zip(ids, sites) if s == site) for site in dict.fromkeys(sites)}
    model = GenerativeModel(
        latent_dim=4, n_modes=14, bounds=ShapeBounds(), label_grid=generation_grid(CASE_GRID, default_ssm()),
        coarse_size=coarse_size, scanner=SimulatedScanner(views=views), fd_steps=FiniteDifferenceSteps(),
        ssm="default",
    )
    settings = GLOSettings(seed=SEED, batch_size=batch_size, lr_shape=3e-3, lr_material=1e-3, lr_latent=3e-2,
                           steps=steps, checkpoint_every=2, log_every=1)
    return TinyRun(GeneratorRun(work_dir, TrainingSet(0, SEED, labelled)), model, settings)
