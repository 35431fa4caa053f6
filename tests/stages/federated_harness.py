"""Runs the federated stage on three tiny sites and 3 logical CPU devices in a fresh process and pickles
what it observed (logical devices must be configured before TensorFlow initialises, which pytest's
process has done):

    python -m tests.stages.federated_harness rounds OUT.pkl ROOT   # single rounds vs eager references
    python -m tests.stages.federated_harness stage OUT.pkl ROOT    # whole stage: uninterrupted vs crashed

``ROOT`` holds the site folders ``A``, ``B``, ``C`` (written by the test). Nothing is asserted here; the
references computed here are eager, single-device gradients of fresh copies of ``G_S``/``G_M`` (no
strategy, no engine), which the tests compare with what the federated rounds did.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from fedsim_tf.federation.devices import configure_site_devices  # noqa: E402

SITES = ("A", "B", "C")
tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(3)
DEVICES = configure_site_devices(len(SITES), "CPU")

import numpy as np  # noqa: E402

from fedsim_tf.models.generators import build_generators  # noqa: E402
from fedsim_tf.options import CommonConfig  # noqa: E402
from fedsim_tf.physics.simulated_scanner import SimulatedScanner  # noqa: E402
from fedsim_tf.stages import federated, federation_flags, model_flags  # noqa: E402
from fedsim_tf.training import federated_run  # noqa: E402
from fedsim_tf.training.federated import FederatedSimulation, SiteData  # noqa: E402
from fedsim_tf.training.federated_settings import FederatedSettings  # noqa: E402
from fedsim_tf.training.gan import GANTrainer, build_gan_models  # noqa: E402
from fedsim_tf.training.gan_settings import GANSettings  # noqa: E402
from fedsim_tf.training.glo import glo_losses  # noqa: E402
from fedsim_tf.training.glo_settings import GLOSettings  # noqa: E402
from fedsim_tf.training.progress import Progress  # noqa: E402
from fedsim_tf.training.semi_run import frozen_gan  # noqa: E402
from tests.federation.harness import RecordingReduction  # noqa: E402

PRETRAIN_ROUNDS, SEMI_ROUNDS = 4, 4
SGD_LR = 1000.0
"""The rounds' server learning rate: large, so that a round's move of a float32 weight is far above the
weight's rounding error (a move of 1e-3 on a weight of 0.2 keeps only about 4 significant digits)."""
CRASH_ROUNDS = (3, 7)  # one in pre-training (resumes from round 2), one in the semi-supervised rounds (from 6)


def config(root: Path, work: str, server_optimizer: str = "sgd") -> federated.FederatedConfig:
    """The tiny stage: 16^3 labels, 8^3 material, 4-d codes, a 4-wide GAN; SGD at :data:`SGD_LR` by default."""
    common = CommonConfig(data_dirs=tuple(str(root / name) for name in SITES), layout="mmwhs",
                          work_dir=str(root / work), seed=1, fold=0, label_size=2, volume_size=16, fov_mm=120.0,
                          coarse_size=8, phantom_dir="", phantom_small=True)
    settings = FederatedSettings(pretrain_rounds=PRETRAIN_ROUNDS, gan_steps=2, semi_rounds=SEMI_ROUNDS,
                                 unlabelled_batch=1, server_optimizer=server_optimizer,
                                 server_lr=SGD_LR if server_optimizer == "sgd" else 1e-3, checkpoint_every=2, log_every=1)
    return federated.FederatedConfig(
        common=common, glo=GLOSettings(seed=1, batch_size=2, steps=settings.total_rounds, checkpoint_every=2,
                                       log_every=1),
        federated=settings, gan=GANSettings(ngf=4, num_upsamplings=2, spade_hidden=8, ndf=4, seed=1, batch_size=2),
        model=model_flags.ModelConfig(latent_dim=4, scanner=SimulatedScanner(views=8)),
        devices=federation_flags.DeviceConfig("CPU"), perceptual="none")


def _values(variables: list) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in variables]


def _simulation(cfg: federated.FederatedConfig, sites: list[SiteData], reduction=None) -> FederatedSimulation:
    prepared = federated.prepare(cfg)
    return FederatedSimulation(prepared.model, prepared.ssm, sites, cfg.glo, cfg.federated, cfg.perceptual, DEVICES,
                               reduction)


def _eager_gradients(simulation: FederatedSimulation, shared: list[np.ndarray], codes: list[np.ndarray],
                     sites: list[SiteData], batches: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Each site's GLO gradient w.r.t. ``G_S``/``G_M``, computed eagerly on fresh single-device copies."""
    shape_generator, material_generator = build_generators(simulation.model, simulation.glo.seed)
    variables = shape_generator.trainable_variables + material_generator.trainable_variables
    for variable, value in zip(variables, shared):
        variable.assign(value)
    gradients = []
    for site, site_codes, batch in zip(sites, codes, batches):
        batch_codes = tf.constant(site_codes[batch])
        with tf.GradientTape() as tape:
            generated = simulation.simulator(shape_generator(batch_codes), material_generator(batch_codes))
            _, total = glo_losses(generated, tf.constant(site.targets.masks[batch]),
                                  tf.constant(site.targets.coarse[batch]), None, 0.0)
        gradients.append([g.numpy() for g in tape.gradient(total, variables)])
    return gradients


def _round(simulation: FederatedSimulation, supervised: bool, round_index: int) -> dict:
    inputs = simulation.engine.site_inputs(simulation.dataset_fn(supervised), round_index)
    result = simulation.federated_round(supervised)(inputs, round_index)
    return {"finite": list(result.finite), "used": list(result.used), "count": int(result.count),
            "losses": result.losses}


def _private(simulation: FederatedSimulation) -> list[dict[str, list[np.ndarray]]]:
    state = []
    for site in simulation.sites:
        entry = {"codes": [site.codes.numpy()], "code_optimizer": _values(site.code_optimizer.variables),
                 "unlabelled_codes": [site.unlabelled_codes.numpy()],
                 "unlabelled_optimizer": _values(site.unlabelled_optimizer.variables)}
        if site.gan is not None:
            entry["gan"] = _values(site.gan.generator.weights + site.gan.discriminator.weights)
        state.append(entry)
    return state


def _with_gans(simulation: FederatedSimulation, gan: GANSettings, image_size: int) -> None:
    """Untrained GANs (same seed at every site) and fixed unlabelled codes, for one unsupervised round."""
    gans = []
    for index, site in enumerate(simulation.sites):
        with simulation.engine.site_device(index):
            gans.append(GANTrainer(*build_gan_models(gan, image_size), gan))
        count = int(site.unlabelled_codes.shape[0])
        site.unlabelled_codes.assign(np.full((count, simulation.model.latent_dim), 0.2 + 0.1 * index, np.float32))
    simulation.set_gans(gans)


def _noise(site: SiteData, seed: int) -> SiteData:
    """The site with its volumes replaced by noise (same shapes)."""
    rng = np.random.default_rng(seed)
    targets = dataclasses.replace(site.targets, masks=(rng.random(site.targets.masks.shape) > 0.5).astype(np.float32),
                                  coarse=rng.uniform(-1, 1, site.targets.coarse.shape).astype(np.float32))
    return dataclasses.replace(site, targets=targets, images=rng.uniform(-1, 1, site.images.shape).astype(np.float32),
                               unlabelled=rng.uniform(-1, 1, site.unlabelled.shape).astype(np.float32))


def rounds(root: Path) -> dict:
    """One supervised round clean, with site B's targets NaN, and with B's volumes as noise; one
    unsupervised round clean and with B as noise."""
    cfg = config(root, "rounds")
    prepared = federated.prepare(cfg)
    clean = federated.site_data(prepared)
    first_unsupervised = next(r for r in range(cfg.federated.total_rounds) if not cfg.federated.supervised(r))
    observed: dict = {"names": [site.name for site in clean]}

    reduction = RecordingReduction()
    simulation = _simulation(cfg, clean, reduction)
    before = _values(simulation.shared_variables())
    codes = [site.codes.numpy() for site in simulation.sites]
    batches = [simulation.batch(s, 0, True) for s in range(len(clean))]
    observed["shared_names"] = [v.name for v in simulation.shared_variables()]
    observed["generator_names"] = [v.name for v in simulation.shape_generator.trainable_variables +
                                   simulation.material_generator.trainable_variables]
    observed["shared_shapes"] = [tuple(v.shape) for v in simulation.shared_variables()]
    observed["private_mirrored"] = [
        isinstance(getattr(v, "value", v), tf.distribute.DistributedValues) or
        isinstance(v, tf.distribute.DistributedValues)
        for site in simulation.sites for v in [site.codes, site.unlabelled_codes, *site.code_optimizer.variables]]
    reduction.log.clear()
    observed["clean"] = {"round": _round(simulation, True, 0), "before": before,
                         "after": _values(simulation.shared_variables()), "private": _private(simulation)}
    observed["reduced"] = list(reduction.log)
    observed["reference"] = _eager_gradients(simulation, before, codes, clean, batches)

    poisoned = list(clean)
    bad_coarse = np.full_like(clean[1].targets.coarse, np.nan)
    poisoned[1] = dataclasses.replace(clean[1], targets=dataclasses.replace(clean[1].targets, coarse=bad_coarse))
    simulation = _simulation(cfg, poisoned)
    nan_before = _values(simulation.shared_variables())
    observed["nan"] = {"round": _round(simulation, True, 0), "before": nan_before,
                       "after": _values(simulation.shared_variables())}

    noisy = list(clean)
    noisy[1] = _noise(clean[1], 7)
    simulation = _simulation(cfg, noisy)
    observed["noise"] = {"round": _round(simulation, True, 0), "private": _private(simulation),
                         "after": _values(simulation.shared_variables())}

    for name, sites in (("clean_unsupervised", clean), ("noise_unsupervised", noisy)):
        simulation = _simulation(cfg, sites)
        _with_gans(simulation, cfg.gan, prepared.model.label_grid.shape[-1])
        gans_before = [entry["gan"] for entry in _private(simulation)]
        shared_before = _values(simulation.shared_variables())
        observed[name] = {"round": _round(simulation, False, first_unsupervised), "gans_before": gans_before,
                          "private": _private(simulation), "before": shared_before,
                          "after": _values(simulation.shared_variables())}
    return observed


class _Crash(Exception):
    pass


def _crashing_progress(at: int) -> type:
    class Crashing(Progress):
        def update(self, step: int, **values: float) -> None:
            super().update(step, **values)
            if step == at:
                raise _Crash(f"killed after round {at}")

    return Crashing


def _final(cfg: federated.FederatedConfig, simulation: FederatedSimulation) -> dict:
    prepared = federated.prepare(cfg)
    gans = [frozen_gan(run, cfg.gan, prepared.model.label_grid.shape[-1]) for run in prepared.gan_runs]
    return {"shared": _values(simulation.shared_variables()), "private": _private(simulation),
            "gans": [_values(g.generator.weights + g.discriminator.weights) for g in gans],
            "gaussian": np.load(prepared.run.gaussian_path)["mean"],
            "gaussian_files": sorted(os.listdir(prepared.run.folder))}


def stage(root: Path) -> dict:
    """The whole stage (Adam server) uninterrupted, and killed at each of :data:`CRASH_ROUNDS` then rerun."""
    uninterrupted = config(root, "whole", "adam")
    observed = {"whole": _final(uninterrupted, federated.run(uninterrupted)), "crashes": []}
    resumed = config(root, "resumed", "adam")
    original = federated_run.Progress
    for at in CRASH_ROUNDS:
        federated_run.Progress = _crashing_progress(at)
        try:
            federated.run(resumed)
        except _Crash:
            observed["crashes"].append(at)
        finally:
            federated_run.Progress = original
    observed["resumed"] = _final(resumed, federated.run(resumed))
    observed["work"] = {"whole": uninterrupted.common.work_dir}
    return observed


def main(mode: str, out: str, root: str) -> None:
    tf.config.experimental.enable_op_determinism()
    observed = {"rounds": rounds, "stage": stage}[mode](Path(root))
    with open(out, "wb") as file:
        pickle.dump(observed, file)


if __name__ == "__main__":
    main(*sys.argv[1:])
