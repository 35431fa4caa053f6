"""Stage ``segment``: the Table 3 protocol -- train a 3D U-Net for binary whole-heart segmentation.

``python -m fedsim_tf.main --stage=segment --mode=lower|upper|finetune|synthetic_only|direct_fl|sim_fl``
``[--flagfile=flags/paper.cfg]``

Single-site modes (one site, ``--site``, the first when empty; folds of :mod:`fedsim_tf.data.splits`):

* ``lower``: train on the ``L`` labelled training volumes of the fold (``--label_sizes`` per site, else
  ``--label_size``; 0 = the paper's smaller size) -- Table 3's "Lower Bound".
* ``upper``: train on every training volume of the fold with its label -- "Upper Bound".
* ``finetune``: pre-train ``--seg_pretrain_steps`` steps on every labelled volume of
  ``--synthetic_dir`` (a folder of NIfTI volumes in the MM-WHS layout, as ``--stage=synthesize``
  writes them, preprocessed like a site), then fine-tune ``--seg_steps`` steps on the ``L`` real ones (same optimiser) -- "Ours".
* ``synthetic_only``: train ``--seg_steps`` steps on every labelled volume of ``--synthetic_dir`` alone, no
  real label (selection on the fold's validation volumes, test on its test volumes) -- Table 2's "trained
  only on synthetic data".

Federated comparison (every site -- ``--data_dir`` folders or the phantom hospitals --, one report per
site; ``--site`` and ``--single_site`` are refused, since the run covers every site; batch size 3 for
every step, the paper's fairness rule: Direct-FL averages one volume from each of 3 sites, so every
method of the comparison trains on 3 volumes per step, whatever ``--seg_batch_size`` says):

* ``direct_fl``: per fold, ``--seg_pretrain_steps`` rounds of federated training of the U-Net on every
  site's ``L`` labelled training volumes (:mod:`fedsim_tf.training.federated_segmentation`: one replica
  per site, ``--fed_devices``; each round every site sends the gradient of one of its volumes, the
  server averages them and takes one Adam step at ``--seg_lr`` with the poly decay over the rounds),
  then every site fine-tunes the federated weights ``--seg_steps`` steps on its own ``L`` labels --
  Table 3's "Direct-FL".
* ``sim_fl``: per site and fold, pre-train ``--seg_pretrain_steps`` steps on the site's synthetic set of
  the federated simulator (``<work_dir>/synthesize/<training set>/<site>-federated-learned-learned-none``,
  made by ``--stage=federated`` then ``--stage=synthesize --generator=federated --site=X --fold=K``; found
  from the fold's training set), then fine-tune ``--seg_steps`` steps on its ``L`` labels -- "Ours-Sim-FL".

The trainer (loss, augmentation, schedule, patches and sliding windows, validation-based selection,
determinism) is :mod:`fedsim_tf.training.segmentation`; this module holds the flags and the protocol.

Folds: ``--folds=K`` runs folds ``0..K-1``; ``--folds=1`` runs only the shared ``--fold``.
A run is named ``segment_<mode>_<site>_L<L>_<unet>`` (finetune, synthetic_only: ``+ _<synthetic folder name>``; the
federated modes: ``+ _fed-<site>-L<L>_...`` over every site, :func:`run_name`), so runs differing in site,
label sizes or synthetic source never share outputs.
Outputs per fold under ``<work_dir>/segment/<run name>/fold<k>``: ``checkpoints/`` (resume point),
``pretrained.weights.h5`` (finetune, sim_fl: the weights at the end of pre-training) and ``result.json``
(written when the fold ends; a rerun skips such folds and resumes an interrupted fold from its
latest checkpoint). Direct-FL's federated rounds, shared by the sites' runs, go to
``<work_dir>/segment/segment_direct_fl_<unet>_fed-<sites>/fold<k>``: ``checkpoints/`` (a rerun resumes the
rounds) and ``federated.weights.h5`` (the weights every site fine-tunes; its run JSON's ``pretrain`` names
it). TensorBoard: ``<work_dir>/logs/segment/<run name>/fold<k>`` (Direct-FL's rounds: per-site curves side
by side).
Run results: ``<work_dir>/results/<run name>.json`` + ``.md`` and the collected ``table3.md``
(:mod:`fedsim_tf.evaluation.report`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from absl import flags, logging

from fedsim_tf.errors import UserInputError
from fedsim_tf.evaluation import report
from fedsim_tf.models.unet_names import UNET_NAMES
from fedsim_tf.options import CommonConfig, common_config_from_flags
from fedsim_tf.data.site import Site
from fedsim_tf.stages import federation_flags, inputs
from fedsim_tf.stages.synthesize import SynthesizeConfig
from fedsim_tf.stages.synthesize import output_dir as synthetic_output_dir
from fedsim_tf.training.segmentation_settings import LR_SCHEDULES, SegmentationSettings

MODES: tuple[str, ...] = ("lower", "upper", "finetune", "synthetic_only", "direct_fl", "sim_fl")
SYNTHETIC_MODES: tuple[str, ...] = ("finetune", "synthetic_only")
"""The modes that train on ``--synthetic_dir``."""
FEDERATED_MODES: tuple[str, ...] = ("direct_fl", "sim_fl")
METHOD_NAMES: dict[str, str] = {"lower": "Lower Bound", "upper": "Upper Bound", "direct_fl": "Direct-FL",
                                "sim_fl": "Ours-Sim-FL"}
PRETRAINING: dict[str, str] = {"finetune": "0 would train without pre-training", "direct_fl": "the federated rounds",
                               "sim_fl": "pre-training steps on the federated synthetic set"}
FEDERATED_BATCH_SIZE = 3
"""Volumes per step of every U-Net training in the federated comparison (paper Sec. 3: Direct-FL averages
three sites' gradients, so the others train with batch 3 too)."""

flags.DEFINE_enum("mode", "lower", list(MODES), "segment: lower (L labels), upper (all labels), finetune "
                  "(pre-train on --synthetic_dir, fine-tune on L labels), synthetic_only (train on --synthetic_dir "
                  "alone, no real label; Table 2), direct_fl (federated U-Net over every "
                  "site, fine-tuned per site) or sim_fl (per site: pre-train on the federated simulator's synthetic "
                  "set, fine-tune on L labels).")
flags.DEFINE_string("synthetic_dir", "", "segment --mode=finetune and synthetic_only: folder of labelled "
                    "synthetic NIfTI volumes; '{fold}' in it is replaced by each fold's index (synthetic sets are "
                    "made per fold).")
flags.DEFINE_integer("folds", 5, "segment: run folds 0..folds-1; 1 = only the shared --fold.", lower_bound=1)
flags.DEFINE_enum("unet", "cicek", list(UNET_NAMES), "segment: 3D U-Net configuration.")
flags.DEFINE_integer("seg_batch_size", 1, "segment: volumes per step of lower/upper/finetune (paper: 1); "
                     "direct_fl and sim_fl always train with 3, the paper's fairness rule (Direct-FL averages one "
                     "volume from each of 3 sites).", lower_bound=1)
flags.DEFINE_integer("seg_steps", 2000, "segment: training (or fine-tuning) steps per fold.", lower_bound=1)
flags.DEFINE_integer("seg_pretrain_steps", 2000, "segment --mode=finetune and sim_fl: pre-training steps on "
                     "synthetic data; --mode=direct_fl: federated rounds.", lower_bound=0)
flags.DEFINE_float("seg_lr", 1e-3, "segment: Adam learning rate (at the start of each phase).", lower_bound=0.0)
flags.DEFINE_enum("seg_lr_schedule", "poly", list(LR_SCHEDULES), "segment: learning rate over each phase "
                  "(pre-training, (fine-)tuning): nnU-Net's poly decay lr * (1 - t/T)^0.9, or constant.")
flags.DEFINE_integer("seg_base_filters", 32, "segment: channels of the U-Net's first convolution (paper: 32).",
                     lower_bound=1)
flags.DEFINE_integer("val_every", 100, "segment: steps between validations (and checkpoints).", lower_bound=1)
flags.DEFINE_bool("seg_augment", True, "segment: random rotation/scale/intensity augmentation.")
flags.DEFINE_integer("seg_patch_size", 0, "segment: train on random cubic patches of this edge (1/3 centred on "
                     "the heart); 0 = whole volumes. Validation/test then predict by overlapping sliding windows of "
                     "this size (nnU-Net style).", lower_bound=0)

FLAGS = flags.FLAGS

if TYPE_CHECKING:
    from fedsim_tf.training.segmentation import Volumes


@dataclass(frozen=True)
class SegmentConfig:
    """Settings of the segment stage (flags above; ``common`` holds the shared ones, ``training`` the
    trainer's)."""

    common: CommonConfig
    mode: str
    folds: int
    training: SegmentationSettings
    synthetic_dir: str = ""
    devices: federation_flags.DeviceConfig = federation_flags.DeviceConfig()

    def fold_indices(self) -> list[int]:
        """The folds this run trains: ``0..folds-1``, or only ``common.fold`` when ``folds == 1``."""
        return [self.common.fold] if self.folds == 1 else list(range(self.folds))

    def to_json(self) -> dict[str, object]:
        """Every setting as JSON values."""
        return dataclasses.asdict(self)


def mode_training(mode: str, training: SegmentationSettings) -> SegmentationSettings:
    """The trainer's settings of ``mode`` from the command line's (``training``: ``--seg_batch_size``,
    ``--seg_pretrain_steps``, ...): batch :data:`FEDERATED_BATCH_SIZE` in the federated comparison, and
    pre-training steps only where the mode pre-trains (:data:`PRETRAINING`)."""
    return dataclasses.replace(
        training, batch_size=FEDERATED_BATCH_SIZE if mode in FEDERATED_MODES else training.batch_size,
        pretrain_steps=training.pretrain_steps if mode in PRETRAINING else 0)


def config_from_flags() -> SegmentConfig:
    """Read and check the segment flags; raises :class:`UserInputError` naming the bad flag."""
    common = common_config_from_flags()
    if FLAGS.mode in SYNTHETIC_MODES:
        if not FLAGS.synthetic_dir:
            raise UserInputError(f"--mode={FLAGS.mode} needs --synthetic_dir (a folder of labelled synthetic volumes)")
        folds = [common.fold] if FLAGS.folds == 1 else range(FLAGS.folds)
        for folder in dict.fromkeys(FLAGS.synthetic_dir.replace("{fold}", str(fold)) for fold in folds):
            if not os.path.isdir(folder):
                raise UserInputError(f"--synthetic_dir={FLAGS.synthetic_dir}: no such folder {folder}")
    elif FLAGS.synthetic_dir:
        raise UserInputError(f"--synthetic_dir is only used with --mode={' or '.join(SYNTHETIC_MODES)}, not "
                             f"--mode={FLAGS.mode}")
    if FLAGS.mode in FEDERATED_MODES and common.site:
        raise UserInputError(f"--site={common.site}: --mode={FLAGS.mode} trains and reports every site; drop --site")
    if FLAGS.mode in FEDERATED_MODES and common.single_site:
        raise UserInputError(f"--single_site: --mode={FLAGS.mode} federates every site; drop --single_site")
    if FLAGS.mode in PRETRAINING and FLAGS.seg_pretrain_steps == 0:
        raise UserInputError(f"--mode={FLAGS.mode} needs --seg_pretrain_steps > 0 ({PRETRAINING[FLAGS.mode]})")
    if FLAGS.seg_lr <= 0:
        raise UserInputError(f"--seg_lr={FLAGS.seg_lr}: must be positive")
    training = mode_training(FLAGS.mode, SegmentationSettings(
        unet=FLAGS.unet, base_filters=FLAGS.seg_base_filters, batch_size=FLAGS.seg_batch_size, steps=FLAGS.seg_steps,
        pretrain_steps=FLAGS.seg_pretrain_steps, lr=FLAGS.seg_lr, lr_schedule=FLAGS.seg_lr_schedule,
        val_every=FLAGS.val_every, augment=FLAGS.seg_augment, patch_size=FLAGS.seg_patch_size, seed=common.seed,
    ))
    return SegmentConfig(common=common, mode=FLAGS.mode, folds=FLAGS.folds, training=training,
                         synthetic_dir=FLAGS.synthetic_dir, devices=federation_flags.device_config_from_flags())


def _synthetic_name(config: SegmentConfig) -> str:
    return os.path.basename(os.path.normpath(config.synthetic_dir))


def method_name(config: SegmentConfig) -> str:
    """Table 3 row name: "Lower Bound", "Upper Bound", "Direct-FL", "Ours-Sim-FL" or
    "Pre-train <synthetic folder name>"; Table 2's "Synthetic only <synthetic folder name>"."""
    if config.mode in METHOD_NAMES:
        return METHOD_NAMES[config.mode]
    prefix = "Synthetic only" if config.mode == "synthetic_only" else "Pre-train"
    return f"{prefix} {_synthetic_name(config)}"


def federation_key(plans: list[inputs.SitePlan]) -> str:
    """``<site>-L<L>_...`` over every site: what a federated run learns from (its fold aside)."""
    return "_".join(f"{plan.name}-L{plan.label_size}" for plan in plans)


def run_name(config: SegmentConfig, site: str, label_size: int, federation: str = "") -> str:
    """``segment_<mode>_<site>_L<label_size>_<unet>``, plus ``_<synthetic folder name>`` for finetune and
    synthetic_only, and ``_fed-<federation>`` (:func:`federation_key`) for the federated modes."""
    name = f"segment_{config.mode}_{site}_L{label_size}_{config.training.unet}"
    if config.mode in SYNTHETIC_MODES:
        return f"{name}_{_synthetic_name(config)}"
    return f"{name}_fed-{federation}" if config.mode in FEDERATED_MODES else name


def sim_fl_folder(common: CommonConfig, plans: list[inputs.SitePlan], site: str, fold: int) -> str:
    """The synthetic set Sim-FL pre-trains ``site`` on in ``fold``: ``--stage=synthesize --generator=federated``'s
    folder of the federated run of that fold (every site's labelled training volumes)."""
    fold_common = dataclasses.replace(common, fold=fold)
    variant = SynthesizeConfig(fold_common, generator="federated").variant  # federated-learned-learned-none
    return synthetic_output_dir(common, inputs.training_set(plans, fold_common).name, site, variant)


def synthetic_folder(config: SegmentConfig, fold: int) -> str:
    """The synthetic set of ``fold`` (``{fold}`` in ``--synthetic_dir`` replaced by its index)."""
    return config.synthetic_dir.replace("{fold}", str(fold))


def check_synthetic_set(folder: str, site: str, fold: int, held_out: list[str]) -> None:
    """Refuse a synthetic set made by ``--stage=synthesize`` for another fold or site, or from a
    generator that saw any of the fold's validation or test volumes (``held_out``).

    A folder without ``manifest.json`` (a user's own set) cannot be checked and is used as it is.
    """
    path = os.path.join(folder, "manifest.json")
    if not os.path.isfile(path):
        logging.warning("segment: %s has no manifest.json; its provenance (fold, training volumes) is not checked",
                        folder)
        return
    with open(path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    seen = set(manifest.get("trained_on", {}).get("labelled", {}).get(site, ()))  # case ids repeat across sites
    if manifest.get("fold") != fold or manifest.get("site") != site:
        raise UserInputError(f"--synthetic_dir: {folder} was synthesized for site {manifest.get('site')} fold "
                             f"{manifest.get('fold')}, not site {site} fold {fold}; use '{{fold}}' in --synthetic_dir "
                             "and the synthetic set of each fold")
    leaked = sorted(seen & set(held_out))
    if leaked:
        raise UserInputError(f"--synthetic_dir: {folder} comes from a generator trained on {', '.join(leaked)}, "
                             f"validation/test volumes of fold {fold}")


def _fold_dir(common: CommonConfig, name: str, fold: int) -> str:
    return os.path.join(common.work_dir, "segment", name, f"fold{fold}")


def fold_folder(config: SegmentConfig, site: str, label_size: int, fold: int) -> str:
    """``<work_dir>/segment/<run name>/fold<k>`` of a single-site run (:func:`run_name`): the fold's
    ``checkpoints/`` and ``result.json``."""
    return _fold_dir(config.common, run_name(config, site, label_size), fold)


def _log_dir(common: CommonConfig, name: str, fold: int) -> str:
    return os.path.join(common.work_dir, "logs", "segment", name, f"fold{fold}")


def _site_fold(
    config: SegmentConfig,
    training: SegmentationSettings,
    site: Site,
    ids: dict[str, list[str]],
    fold: int,
    name: str,
    pretrain: Volumes | None = None,
    initial_weights: str | None = None,
    train: Volumes | None = None,
) -> dict[str, object]:
    """One fold of one site: read back when finished, else train (resuming), test and record it.

    Args:
        config: the run's settings.
        training: the trainer's settings of this fold.
        site: the site's volumes; ``ids`` its fold's case ids (:meth:`inputs.SitePlan.fold_ids`).
        fold: the fold; ``name`` the run's name.
        pretrain: the synthetic pre-training volumes (:func:`_synthetic_volumes`) or None.
        initial_weights: weights the U-Net starts from (Direct-FL's federated weights) or None.
        train: the training volumes in place of the site's labelled ones (synthetic_only: the synthetic
            set), or None.
    """
    from fedsim_tf.training import segmentation  # TensorFlow loads here, once the inputs are checked

    fold_dir = _fold_dir(config.common, name, fold)
    result_path = os.path.join(fold_dir, "result.json")
    if os.path.exists(result_path):
        logging.info("segment %s %s fold %d: finished earlier, reading %s", config.mode, site.name, fold, result_path)
        with open(result_path, encoding="utf-8") as stream:
            return json.load(stream)
    if train is None:
        train = segmentation.volumes_from_cases(site.cases, ids["train_labelled"],
                                                f"site {site.name} fold {fold} train")
    data = segmentation.FoldData(
        train=train,
        val=segmentation.volumes_from_cases(site.cases, ids["val"], f"site {site.name} fold {fold} val"),
        test=segmentation.volumes_from_cases(site.cases, ids["test"], f"site {site.name} fold {fold} test"),
        pretrain=pretrain,
    )
    result = segmentation.train_fold(training, data, fold, fold_dir, _log_dir(config.common, name, fold),
                                     f"segment {config.mode} {site.name}", initial_weights)
    report.write_json_atomic(result_path, result)
    logging.info("segment %s %s fold %d: test Dice %.4f +- %.4f", config.mode, site.name, fold, result["mean"],
                 result["std"])
    return result


def _write_record(config: SegmentConfig, name: str, site: str, size: int, results: list[dict[str, object]],
                  pretrain_records: list[dict[str, object]]) -> dict[str, object]:
    """Build and write a run's record (:mod:`fedsim_tf.evaluation.report`)."""
    record = report.build_report(name, method_name(config), site, size, config.common.seed,
                                 config.to_json(), results, pretrain=pretrain_records or None)
    json_path, table_path = report.write_report(os.path.join(config.common.work_dir, "results"), record)
    logging.info("segment %s %s: Dice %s %% over %d volumes; results %s, table %s", config.mode, site,
                 report.format_cell(record["mean"], record["std"]),
                 sum(len(r["test_dice"]) for r in results), json_path, table_path)
    return record


def run(config: SegmentConfig) -> dict[str, object] | list[dict[str, object]]:
    """Run the configured folds (skipping finished ones) and write the run's results.

    ``--mode=direct_fl`` configures one device per site first thing (TensorFlow loads then, before any
    volume is read: :func:`fedsim_tf.stages.federation_flags.site_devices`).

    Returns:
        The run record (schema in :mod:`fedsim_tf.evaluation.report`); for the federated modes one
        record per site, sites in order.
    """
    if config.mode == "direct_fl":
        devices = federation_flags.site_devices(config.devices, inputs.site_count(config.common))
        return _run_direct_fl(config, devices)
    if config.mode == "sim_fl":
        return _run_sim_fl(config)
    common = config.common
    plan = inputs.pick_site(inputs.plan_sites(common), common.site)
    size = plan.n_train if config.mode == "upper" else plan.label_size
    fold_ids = {fold: plan.fold_ids(fold, size) for fold in config.fold_indices()}
    name = run_name(config, plan.name, size)
    synthetic = {}
    if config.mode in SYNTHETIC_MODES:
        for fold, ids in fold_ids.items():
            folder = synthetic_folder(config, fold)
            check_synthetic_set(folder, plan.name, fold, ids["val"] + ids["test"])
            synthetic[fold] = folder
    site = inputs.load_plan(plan, common)
    loaded = {folder: inputs.load_synthetic(folder, common) for folder in dict.fromkeys(synthetic.values())}
    results, pretrain_records = [], []
    for fold, ids in fold_ids.items():
        volumes = None
        if fold in synthetic:
            volumes = _synthetic_volumes(loaded[synthetic[fold]], f"--synthetic_dir={synthetic[fold]}", site)
        if config.mode == "synthetic_only":
            results.append(_site_fold(config, config.training, site, ids, fold, name, train=volumes))
            continue
        if volumes is not None:
            pretrain_records.append({"fold": fold, "source": synthetic[fold], "cases": list(volumes.ids),
                                     "steps": config.training.pretrain_steps})
        results.append(_site_fold(config, config.training, site, ids, fold, name, volumes))
    return _write_record(config, name, site.name, size, results, pretrain_records)


def _synthetic_volumes(synthetic: Site, what: str, site: Site) -> Volumes:
    """Every labelled volume of a synthetic set, checked to lie on ``site``'s grid size.

    Raises:
        UserInputError: naming ``what`` (the set) when its volumes differ in size from the site's.
    """
    from fedsim_tf.training import segmentation  # TensorFlow loads here, once the inputs are checked

    labelled = [case_id for case_id, case in synthetic.cases.items() if case.label is not None]
    volumes = segmentation.volumes_from_cases(synthetic.cases, labelled, what)
    site_shape = next(iter(site.cases.values())).image.shape
    if volumes.images.shape[1:] != site_shape:
        raise UserInputError(f"{what}: volumes of size {volumes.images.shape[1:]} differ from site {site.name}'s "
                             f"{site_shape}")
    return volumes


def _log_batch_size(config: SegmentConfig, sites: int) -> None:
    logging.info("segment %s: %d sites; batch size %d for every U-Net step (the paper's fairness rule for the "
                 "federated comparison%s; --seg_batch_size applies to the single-site modes)", config.mode, sites,
                 config.training.batch_size,
                 f": Direct-FL's rounds average one volume from each of the {sites} sites"
                 if config.mode == "direct_fl" else "")


def _run_sim_fl(config: SegmentConfig) -> list[dict[str, object]]:
    """Sim-FL: per site and fold, pre-train on the site's federated synthetic set, fine-tune, test."""
    common = config.common
    plans = inputs.plan_sites(common)
    key = federation_key(plans)
    folders = {}
    for fold in config.fold_indices():
        for plan in plans:
            folder = sim_fl_folder(common, plans, plan.name, fold)
            if not os.path.isdir(folder):
                raise UserInputError(f"--mode=sim_fl: no synthetic set {folder} for site {plan.name} fold {fold}; make "
                                     f"it with --stage=synthesize --generator=federated --site={plan.name} "
                                     f"--fold={fold} (after --stage=federated --fold={fold})")
            ids = plan.fold_ids(fold)
            check_synthetic_set(folder, plan.name, fold, ids["val"] + ids["test"])
            folders[plan.name, fold] = folder
    _log_batch_size(config, len(plans))
    records = []
    for plan in plans:
        site = inputs.load_plan(plan, common)
        name = run_name(config, plan.name, plan.label_size, key)
        results, pretrain_records = [], []
        for fold in config.fold_indices():
            folder = folders[plan.name, fold]
            pretrain = _synthetic_volumes(inputs.load_synthetic(folder, common), f"--mode=sim_fl: {folder}", site)
            pretrain_records.append({"fold": fold, "source": folder, "cases": list(pretrain.ids),
                                     "steps": config.training.pretrain_steps})
            results.append(_site_fold(config, config.training, site, plan.fold_ids(fold), fold, name, pretrain))
        records.append(_write_record(config, name, plan.name, plan.label_size, results, pretrain_records))
    return records


def _run_direct_fl(config: SegmentConfig, devices: list[str]) -> list[dict[str, object]]:
    """Direct-FL: per fold, federated rounds over every site, then per site fine-tuning and test."""
    common = config.common
    plans = inputs.plan_sites(common)
    key = federation_key(plans)
    sites = [inputs.load_plan(plan, common) for plan in plans]
    names = [run_name(config, plan.name, plan.label_size, key) for plan in plans]
    shared_name = f"segment_{config.mode}_{config.training.unet}_fed-{key}"
    _log_batch_size(config, len(plans))

    from fedsim_tf.training import federated_segmentation, segmentation

    rounds = config.training.pretrain_steps
    fine_tuning = dataclasses.replace(config.training, pretrain_steps=0)
    results: list[list[dict[str, object]]] = [[] for _ in plans]
    pretrain_records: list[list[dict[str, object]]] = [[] for _ in plans]
    for fold in config.fold_indices():
        ids = [plan.fold_ids(fold) for plan in plans]
        fold_dir = _fold_dir(common, shared_name, fold)
        weights = os.path.join(fold_dir, federated_segmentation.FEDERATED_WEIGHTS)
        if not all(os.path.exists(os.path.join(_fold_dir(common, name, fold), "result.json")) for name in names):
            volumes = [segmentation.volumes_from_cases(site.cases, site_ids["train_labelled"],
                                                       f"site {site.name} fold {fold} train")
                       for site, site_ids in zip(sites, ids)]
            federation = federated_segmentation.DirectFederation(config.training, volumes, [s.name for s in sites],
                                                                 fold, rounds, devices)
            weights = federated_segmentation.train(federation, fold_dir, _log_dir(common, shared_name, fold),
                                                   config.training.val_every, f"segment direct_fl fold {fold}")
            del federation
        cases = [f"{site.name}/{case_id}" for site, site_ids in zip(sites, ids) for case_id in site_ids["train_labelled"]]
        for index, (site, site_ids, name) in enumerate(zip(sites, ids, names)):
            pretrain_records[index].append({"fold": fold, "source": weights, "cases": cases, "steps": rounds})
            results[index].append(_site_fold(config, fine_tuning, site, site_ids, fold, name, initial_weights=weights))
    return [_write_record(config, name, plan.name, plan.label_size, site_results, records)
            for plan, name, site_results, records in zip(plans, names, results, pretrain_records)]
