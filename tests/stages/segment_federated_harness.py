"""Runs Direct-FL on 3 logical CPU devices in a fresh process and pickles what it observed.

TensorFlow's logical devices must be configured before it initialises them, which pytest's process has
already done; :mod:`tests.stages.test_segment_federated` therefore runs this module as a subprocess:

    python -m tests.stages.segment_federated_harness OUT.pkl WORK_DIR

It observes (nothing is asserted here):

* ``round``: one round with the server's plain SGD (lr 1000, constant) on whole, unaugmented volumes: the
  U-Net's weights before and after, each site's batch as its input pipeline yields it, and the eager
  single-device gradient of each site's batch on a separate copy of the U-Net;
* ``resume``: the final weights of 4 uninterrupted rounds (augmented 8^3 patches, Adam, poly decay) and of
  a run that crashes after round 3 (checkpoint at round 2) and is rerun;
* ``direct_fl``: the records of ``--stage=segment --mode=direct_fl`` on three tiny sites.
"""

from __future__ import annotations

import os
import pickle
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from fedsim_tf.federation.devices import configure_site_devices  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(3)
DEVICES = configure_site_devices(3, "CPU")

import numpy as np  # noqa: E402

from fedsim_tf.losses.segmentation import dice_ce_loss  # noqa: E402
from fedsim_tf.models.unet3d import build_unet3d  # noqa: E402
from fedsim_tf.training import federated_segmentation  # noqa: E402
from fedsim_tf.training.segmentation_settings import SegmentationSettings  # noqa: E402
from tests.stages.federated_sites import SITES, SIZE, e2e_config, site_volumes, write_sites  # noqa: E402

SETTINGS = SegmentationSettings(unet="nnunet", base_filters=2, lr=1e3, lr_schedule="constant", augment=False, seed=4)


def one_round() -> dict:
    volumes = [site_volumes(s) for s in range(len(SITES))]
    federation = federated_segmentation.DirectFederation(SETTINGS, volumes, SITES, 0, 5, DEVICES, "sgd")
    before = [v.numpy() for v in federation.model.trainable_variables]
    batches = [[t.numpy() for t in next(iter(federation.dataset(s, 0)))] for s in range(len(SITES))]
    result = federation.federated_round(federation.engine.site_inputs(federation.dataset, 0), 0)
    after = [v.numpy() for v in federation.model.trainable_variables]
    copy = build_unet3d(SETTINGS.unet, (SIZE,) * 3, SETTINGS.base_filters)
    copy.set_weights(before)
    eager = []
    for images, labels in batches:
        with tf.GradientTape() as tape:
            loss = dice_ce_loss(tf.constant(labels), copy(tf.constant(images), training=True))
        eager.append([g.numpy() for g in tape.gradient(loss, copy.trainable_variables)])
    return {"before": before, "after": after, "batches": batches, "eager": eager, "result": result._asdict(),
            "volumes": [v.images for v in volumes]}


class Crash(Exception):
    """The simulated crash."""


def resume(work_dir: Path) -> dict:
    settings = replace(SETTINGS, lr=3e-2, lr_schedule="poly", augment=True, patch_size=8)
    volumes = [site_volumes(s) for s in range(len(SITES))]

    def federation() -> federated_segmentation.DirectFederation:
        return federated_segmentation.DirectFederation(settings, volumes, SITES, 1, 4, DEVICES)

    def weights(path: str) -> list[np.ndarray]:
        model = build_unet3d(settings.unet, (8,) * 3, settings.base_filters)
        model.load_weights(path)
        return [w.numpy() for w in model.weights]

    straight = weights(federated_segmentation.train(federation(), str(work_dir / "straight"), str(work_dir / "l1"), 2))

    class CrashingProgress(federated_segmentation.Progress):
        def update(self, step: int, **values: float) -> None:
            if step == 3:
                raise Crash(step)
            super().update(step, **values)

    original = federated_segmentation.Progress
    federated_segmentation.Progress = CrashingProgress
    try:
        federated_segmentation.train(federation(), str(work_dir / "resumed"), str(work_dir / "l2"), 2)
        crashed = "no crash"
    except Crash as error:
        crashed = f"crashed at {error.args[0]}"
    finally:
        federated_segmentation.Progress = original
    saved = sorted(os.listdir(work_dir / "resumed" / "checkpoints"))
    resumed = weights(federated_segmentation.train(federation(), str(work_dir / "resumed"), str(work_dir / "l2"), 2))
    return {"straight": straight, "resumed": resumed, "crashed": crashed, "saved_before_resume": saved}


def direct_fl(work_dir: Path) -> dict:
    from fedsim_tf.stages import federation_flags, segment

    data_dirs = write_sites(work_dir)
    config = replace(e2e_config(str(work_dir / "work"), data_dirs, "direct_fl"),
                     devices=federation_flags.DeviceConfig("CPU"))
    records = segment.run(config)
    return {"records": records, "table": (work_dir / "work" / "results" / "table3.md").read_text()}


def main(argv: list[str]) -> None:
    out, work_dir = argv[1], Path(argv[2])
    observed = {"devices": DEVICES, "round": one_round(), "resume": resume(work_dir / "resume"),
                "direct_fl": direct_fl(work_dir / "direct_fl")}
    with open(out, "wb") as file:
        pickle.dump(observed, file)


if __name__ == "__main__":
    main(sys.argv)
