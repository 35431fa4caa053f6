"""Stage ``segment``: the Table 3 protocol -- train a 3D U-Net for binary whole-heart segmentation.

``python -m fedsim_tf.main --stage=segment --mode=lower|upper|finetune [--flagfile=flags/paper.cfg]``

Modes (one site, ``--site``, the first when empty; folds of :mod:`fedsim_tf.data.splits`):

* ``lower``: train on the ``L`` labelled training volumes of the fold (``--label_size``; 0 = the
  paper's smaller size) -- Table 3's "Lower Bound".
* ``upper``: train on every training volume of the fold with its label -- "Upper Bound".
* ``finetune``: pre-train ``--seg_pretrain_steps`` steps on every labelled volume of
  ``--synthetic_dir`` (a folder of NIfTI volumes in the MM-WHS layout, as ``--stage=synthesize``
  writes them, preprocessed like a site), then fine-tune ``--seg_steps`` steps on the ``L`` real ones (same optimiser) -- "Ours".

The trainer (loss, augmentation, schedule, patches and sliding windows, validation-based selection,
determinism) is :mod:`fedsim_tf.training.segmentation`; this module holds the flags and the protocol.

Folds: ``--folds=K`` runs folds ``0..K-1``; ``--folds=1`` runs only the shared ``--fold``.
A run is named ``segment_<mode>_<site>_L<L>_<unet>`` (finetune: ``+ _<synthetic folder name>``,
:func:`run_name`), so runs differing in site, label size or synthetic source never share outputs.
Outputs per fold under ``<work_dir>/segment/<run name>/fold<k>``: ``checkpoints/`` (resume point),
``pretrained.weights.h5`` (finetune: the weights at the end of pre-training) and ``result.json``
(written when the fold ends; a rerun skips such folds and resumes an interrupted fold from its
latest checkpoint). TensorBoard: ``<work_dir>/logs/segment/<run name>/fold<k>``.
Run results: ``<work_dir>/results/<run name>.json`` + ``.md`` and the collected ``table3.md``
(:mod:`fedsim_tf.evaluation.report`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

from absl import flags, logging

from fedsim_tf.errors import UserInputError
from fedsim_tf.evaluation import report
from fedsim_tf.models.unet_names import UNET_NAMES
from fedsim_tf.options import CommonConfig, common_config_from_flags
from fedsim_tf.stages import inputs
from fedsim_tf.training.segmentation_settings import LR_SCHEDULES, SegmentationSettings

MODES: tuple[str, ...] = ("lower", "upper", "finetune")
METHOD_NAMES: dict[str, str] = {"lower": "Lower Bound", "upper": "Upper Bound"}

flags.DEFINE_enum("mode", "lower", list(MODES), "segment: lower (L labels), upper (all labels) or finetune "
                  "(pre-train on --synthetic_dir, fine-tune on L labels).")
flags.DEFINE_string("synthetic_dir", "", "segment --mode=finetune: folder of labelled synthetic NIfTI volumes; "
                    "'{fold}' in it is replaced by each fold's index (synthetic sets are made per fold).")
flags.DEFINE_integer("folds", 5, "segment: run folds 0..folds-1; 1 = only the shared --fold.", lower_bound=1)
flags.DEFINE_enum("unet", "cicek", list(UNET_NAMES), "segment: 3D U-Net configuration.")
flags.DEFINE_integer("seg_batch_size", 1, "segment: volumes per step (paper: 1 single-site, 3 federated).",
                     lower_bound=1)
flags.DEFINE_integer("seg_steps", 2000, "segment: training (or fine-tuning) steps per fold.", lower_bound=1)
flags.DEFINE_integer("seg_pretrain_steps", 2000, "segment --mode=finetune: pre-training steps on synthetic data.",
                     lower_bound=0)
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


@dataclass(frozen=True)
class SegmentConfig:
    """Settings of the segment stage (flags above; ``common`` holds the shared ones, ``training`` the
    trainer's)."""

    common: CommonConfig
    mode: str
    folds: int
    training: SegmentationSettings
    synthetic_dir: str = ""

    def fold_indices(self) -> list[int]:
        """The folds this run trains: ``0..folds-1``, or only ``common.fold`` when ``folds == 1``."""
        return [self.common.fold] if self.folds == 1 else list(range(self.folds))

    def to_json(self) -> dict[str, object]:
        """Every setting as JSON values."""
        return dataclasses.asdict(self)


def config_from_flags() -> SegmentConfig:
    """Read and check the segment flags; raises :class:`UserInputError` naming the bad flag."""
    common = common_config_from_flags()
    if FLAGS.mode == "finetune":
        if not FLAGS.synthetic_dir:
            raise UserInputError("--mode=finetune needs --synthetic_dir (a folder of labelled synthetic volumes)")
        folds = [common.fold] if FLAGS.folds == 1 else range(FLAGS.folds)
        for folder in dict.fromkeys(FLAGS.synthetic_dir.replace("{fold}", str(fold)) for fold in folds):
            if not os.path.isdir(folder):
                raise UserInputError(f"--synthetic_dir={FLAGS.synthetic_dir}: no such folder {folder}")
        if FLAGS.seg_pretrain_steps == 0:
            raise UserInputError("--mode=finetune needs --seg_pretrain_steps > 0 (0 would train without pre-training)")
    elif FLAGS.synthetic_dir:
        raise UserInputError(f"--synthetic_dir is only used with --mode=finetune, not --mode={FLAGS.mode}")
    if FLAGS.seg_lr <= 0:
        raise UserInputError(f"--seg_lr={FLAGS.seg_lr}: must be positive")
    training = SegmentationSettings(
        unet=FLAGS.unet, base_filters=FLAGS.seg_base_filters, batch_size=FLAGS.seg_batch_size, steps=FLAGS.seg_steps,
        pretrain_steps=FLAGS.seg_pretrain_steps if FLAGS.mode == "finetune" else 0, lr=FLAGS.seg_lr,
        lr_schedule=FLAGS.seg_lr_schedule, val_every=FLAGS.val_every, augment=FLAGS.seg_augment,
        patch_size=FLAGS.seg_patch_size, seed=common.seed,
    )
    return SegmentConfig(common=common, mode=FLAGS.mode, folds=FLAGS.folds, training=training,
                         synthetic_dir=FLAGS.synthetic_dir)


def _synthetic_name(config: SegmentConfig) -> str:
    return os.path.basename(os.path.normpath(config.synthetic_dir))


def method_name(config: SegmentConfig) -> str:
    """Table 3 row name: "Lower Bound", "Upper Bound" or "Pre-train <synthetic folder name>"."""
    if config.mode in METHOD_NAMES:
        return METHOD_NAMES[config.mode]
    return f"Pre-train {_synthetic_name(config)}"


def run_name(config: SegmentConfig, site: str, label_size: int) -> str:
    """``segment_<mode>_<site>_L<label_size>_<unet>``, plus ``_<synthetic folder name>`` for finetune."""
    name = f"segment_{config.mode}_{site}_L{label_size}_{config.training.unet}"
    return f"{name}_{_synthetic_name(config)}" if config.mode == "finetune" else name


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


def run(config: SegmentConfig) -> dict[str, object]:
    """Run the configured folds (skipping finished ones) and write the run's results.

    Returns:
        The run record (schema in :mod:`fedsim_tf.evaluation.report`).
    """
    common = config.common
    plan = inputs.pick_site(inputs.plan_sites(common), common.site)
    size = plan.n_train if config.mode == "upper" else plan.label_size
    fold_ids = {fold: plan.fold_ids(fold, size) for fold in config.fold_indices()}
    name = run_name(config, plan.name, size)
    synthetic = {}
    if config.mode == "finetune":
        for fold, ids in fold_ids.items():
            folder = synthetic_folder(config, fold)
            check_synthetic_set(folder, plan.name, fold, ids["val"] + ids["test"])
            synthetic[fold] = folder
    site = inputs.load_plan(plan, common)
    loaded = {folder: inputs.load_synthetic(folder, common) for folder in dict.fromkeys(synthetic.values())}

    from fedsim_tf.training import segmentation  # TensorFlow loads here, once the inputs are checked

    results, pretrain_records = [], []
    for fold, ids in fold_ids.items():
        fold_dir = os.path.join(common.work_dir, "segment", name, f"fold{fold}")
        result_path = os.path.join(fold_dir, "result.json")
        pretrain = None
        if fold in synthetic:
            cases = loaded[synthetic[fold]].cases
            labelled = [case_id for case_id, case in cases.items() if case.label is not None]
            pretrain = segmentation.volumes_from_cases(cases, labelled, f"--synthetic_dir={synthetic[fold]}")
            pretrain_records.append({"fold": fold, "source": synthetic[fold], "cases": list(pretrain.ids),
                                     "steps": config.training.pretrain_steps})
        if os.path.exists(result_path):
            logging.info("segment %s fold %d: finished earlier, reading %s", config.mode, fold, result_path)
            with open(result_path, encoding="utf-8") as stream:
                results.append(json.load(stream))
            continue
        data = segmentation.FoldData(
            train=segmentation.volumes_from_cases(site.cases, ids["train_labelled"], f"site {site.name} fold {fold} train"),
            val=segmentation.volumes_from_cases(site.cases, ids["val"], f"site {site.name} fold {fold} val"),
            test=segmentation.volumes_from_cases(site.cases, ids["test"], f"site {site.name} fold {fold} test"),
            pretrain=pretrain,
        )
        if pretrain is not None and pretrain.images.shape[1:] != data.train.images.shape[1:]:
            raise UserInputError(f"--synthetic_dir={synthetic[fold]}: volumes of size {pretrain.images.shape[1:]} "
                                 f"differ from the site's {data.train.images.shape[1:]}")
        log_dir = os.path.join(common.work_dir, "logs", "segment", name, f"fold{fold}")
        result = segmentation.train_fold(config.training, data, fold, fold_dir, log_dir, f"segment {config.mode}")
        report.write_json_atomic(result_path, result)
        logging.info("segment %s fold %d: test Dice %.4f +- %.4f", config.mode, fold, result["mean"], result["std"])
        results.append(result)
    record = report.build_report(name, method_name(config), site.name, size, common.seed,
                                 config.to_json(), results, pretrain=pretrain_records or None)
    json_path, table_path = report.write_report(os.path.join(common.work_dir, "results"), record)
    logging.info("segment %s: Dice %s %% over %d volumes; results %s, table %s", config.mode,
                 report.format_cell(record["mean"], record["std"]),
                 sum(len(r["test_dice"]) for r in results), json_path, table_path)
    return record
