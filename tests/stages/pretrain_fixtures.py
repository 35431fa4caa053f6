"""Tiny GLO pre-training inputs shared by the pretrain and sample tests: hearts of the default SSM
rendered at known parameters on a 16^3 grid (10 mm voxels), coarse 4^3 or 8^3 targets."""

from __future__ import annotations

import numpy as np

from fedsim_tf.data.preprocess import area_downsample
from fedsim_tf.grid import Grid
from fedsim_tf.options import CommonConfig
from fedsim_tf.physics.ct_simulator import ScannerSettings
from fedsim_tf.shape.shape_op import ShapeRenderer
from fedsim_tf.shape.ssm import default_ssm
from fedsim_tf.stages import pretrain
from fedsim_tf.training.glo import GLOSettings, GLOTargets

CASE_GRID = Grid.centred(16, 160.0, (3.0, -2.0, 5.0))


def tiny_targets(coarse_size: int, count: int = 3) -> GLOTargets:
    """``count`` real hearts: SSM weights/translations away from the mean, blood bright (0.5), rest -0.6."""
    ssm = default_ssm()
    renderer = ShapeRenderer(ssm, pretrain.generation_grid(CASE_GRID, ssm))
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


def tiny_config(work_dir: str, coarse_size: int, steps: int, batch_size: int, views: int = 8) -> pretrain.PretrainConfig:
    common = CommonConfig(
        data_dirs=(), layout="mmwhs", work_dir=work_dir, seed=7, fold=0, label_size=0, volume_size=16,
        fov_mm=160.0, coarse_size=coarse_size, phantom_dir="", phantom_small=True,
    )
    return pretrain.PretrainConfig(
        common=common, latent_dim=4, steps=steps,
        glo=GLOSettings(seed=7, batch_size=batch_size, lr_shape=3e-3, lr_material=1e-3, lr_latent=3e-2),
        perceptual="none", scanner=ScannerSettings(views=views), checkpoint_every=2, log_every=1,
    )
