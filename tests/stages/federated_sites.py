"""Inputs of the federated segment tests (:mod:`tests.stages.test_segment_federated` and its subprocess
:mod:`tests.stages.segment_federated_harness`); importing it initialises no TensorFlow device."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fedsim_tf.options import CommonConfig
from fedsim_tf.stages import segment
from fedsim_tf.training.segmentation import Volumes
from fedsim_tf.training.segmentation_settings import SegmentationSettings
from tests.stages.sites import BLOOD_HU, write_site

SITES = ("A", "B", "C")
SIZE = 16


def write_sites(folder: Path) -> tuple[str, ...]:
    """Three tiny sites of 6 labelled cases each (other draws per site)."""
    for index, name in enumerate(SITES):
        write_site(folder / name, 6, seed=20 + index, myocardium_hu=BLOOD_HU)
    return tuple(str(folder / name) for name in SITES)


def e2e_config(work_dir: str, data_dirs: tuple[str, ...], mode: str) -> segment.SegmentConfig:
    """One fold, 16^3 volumes, a 2-filter nnU-Net: 3 pre-training steps (Direct-FL: rounds), 2 fine-tuning."""
    common = CommonConfig(data_dirs=data_dirs, layout="mmwhs", work_dir=work_dir, seed=3, fold=0, label_size=2,
                          volume_size=16, coarse_size=8, phantom_dir=os.path.join(work_dir, "phantoms"),
                          phantom_small=True, fov_mm=160.0)
    training = SegmentationSettings(unet="nnunet", base_filters=2, batch_size=segment.FEDERATED_BATCH_SIZE, steps=2,
                                    pretrain_steps=3, lr=1e-3, val_every=1, seed=3)
    return segment.SegmentConfig(common=common, mode=mode, folds=1, training=training)


def site_volumes(site: int, count: int = 3) -> Volumes:
    """``count`` volumes of a ball of random radius; site ``s``'s images are offset by ``2 s`` (so a
    batch names the site it came from)."""
    rng = np.random.default_rng([11, site])
    z, y, x = np.mgrid[:SIZE, :SIZE, :SIZE]
    images, labels = [], []
    for _ in range(count):
        centre, radius = rng.uniform(6, 10, 3), rng.uniform(3, 5)
        ball = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2
        labels.append(ball.astype(np.uint8))
        images.append((ball + 2.0 * site + 0.3 * rng.standard_normal(ball.shape)).astype(np.float32))
    return Volumes(tuple(f"{SITES[site]}_{i}" for i in range(count)), np.stack(images), np.stack(labels))
