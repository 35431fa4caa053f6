"""Stage ``segment``: the Table 3 protocol -- train a 3D U-Net for binary whole-heart segmentation.

``python -m fedsim_tf.main --stage=segment --mode=lower|upper|finetune [--flagfile=flags/segment_demo.cfg]``

Modes (one site, ``--site``; folds of :mod:`fedsim_tf.data.splits`):

* ``lower``: train on the ``L`` labelled training volumes of the fold (``--label_size``; 0 = the
  paper's smaller size) -- Table 3's "Lower Bound".
* ``upper``: train on every training volume of the fold with its label -- "Upper Bound".
* ``finetune``: pre-train ``--seg_pretrain_steps`` steps on every labelled volume of
  ``--synthetic_dir`` (a folder of NIfTI volumes in the ``--layout`` layout, preprocessed like a
  site), then fine-tune ``--seg_steps`` steps on the ``L`` real ones (same optimiser) -- "Ours".

The target is ``label > 0`` (the whole heart). Loss: soft Dice + cross-entropy 1:1, with random
augmentation (:mod:`fedsim_tf.training.augmentation`); Adam with nnU-Net's poly learning-rate decay,
restarted for the fine-tuning phase (:mod:`fedsim_tf.training.schedules`, ``--seg_lr_schedule``).
With ``--seg_patch_size`` the model trains on patches and predicts whole volumes by overlapping
sliding windows (:mod:`fedsim_tf.models.sliding_window`). Every ``--val_every`` steps of the (fine-)
tuning phase the model is scored on the fold's validation volumes and the weights with the best
mean validation Dice are kept; they are scored per volume on the fold's test volumes.

Folds: ``--folds=K`` runs folds ``0..K-1``; ``--folds=1`` runs only the shared ``--fold``.
A run is named ``segment_<mode>_<site>_L<L>_<unet>`` (finetune: ``+ _<synthetic folder name>``,
:func:`run_name`), so runs differing in site, label size or synthetic source never share outputs.
Outputs per fold under ``<work_dir>/segment/<run name>/fold<k>``: ``checkpoints/`` (resume point),
``pretrained.weights.h5`` (finetune: the weights at the end of pre-training) and ``result.json``
(written when the fold ends; a rerun skips such folds and resumes an interrupted fold from its
latest checkpoint). TensorBoard: ``<work_dir>/logs/segment/<run name>/fold<k>``.
Run results: ``<work_dir>/results/<run name>.json`` + ``.md`` and the collected ``table3.md``
(:mod:`fedsim_tf.evaluation.report`).

Determinism: weights are initialised from ``keras.utils.set_random_seed`` of a seed derived from
``(seed, fold)``; the batch drawn and its augmentation at step ``t`` come from a NumPy generator
seeded with ``(seed, fold, t)``, so a resumed fold sees the same data as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from absl import flags, logging

from fedsim_tf.data.case import Case
from fedsim_tf.data.site import Site
from fedsim_tf.data.splits import fold_split
from fedsim_tf.errors import UserInputError
from fedsim_tf.evaluation import report
from fedsim_tf.evaluation.dice import dice_per_volume, mean_dice
from fedsim_tf.losses.segmentation import dice_ce_loss
from fedsim_tf.models.sliding_window import sliding_window_logits
from fedsim_tf.models.unet3d import UNET_NAMES, build_unet3d
from fedsim_tf.options import CommonConfig, common_config_from_flags
from fedsim_tf.stages import inputs
from fedsim_tf.training.augmentation import AugmentationConfig, augment
from fedsim_tf.training.checkpoints import StageCheckpoint
from fedsim_tf.training.progress import Progress
from fedsim_tf.training.schedules import POLY_POWER, PhasedPolyDecay
from fedsim_tf.training.summaries import Summaries, middle_slice_image

MODES: tuple[str, ...] = ("lower", "upper", "finetune")
METHOD_NAMES: dict[str, str] = {"lower": "Lower Bound", "upper": "Upper Bound"}

flags.DEFINE_enum("mode", "lower", list(MODES), "segment: lower (L labels), upper (all labels) or finetune "
                  "(pre-train on --synthetic_dir, fine-tune on L labels).")
flags.DEFINE_string("synthetic_dir", "", "segment --mode=finetune: folder of labelled synthetic NIfTI volumes.")
flags.DEFINE_string("site", "", "segment: site to evaluate (site name or --data_dir folder); empty = the first.")
flags.DEFINE_integer("folds", 5, "segment: run folds 0..folds-1; 1 = only the shared --fold.", lower_bound=1)
flags.DEFINE_enum("unet", "cicek", list(UNET_NAMES), "segment: 3D U-Net configuration.")
flags.DEFINE_integer("seg_batch_size", 1, "segment: volumes per step (paper: 1 single-site, 3 federated).",
                     lower_bound=1)
flags.DEFINE_integer("seg_steps", 2000, "segment: training (or fine-tuning) steps per fold.", lower_bound=1)
flags.DEFINE_integer("seg_pretrain_steps", 2000, "segment --mode=finetune: pre-training steps on synthetic data.",
                     lower_bound=0)
flags.DEFINE_float("seg_lr", 1e-3, "segment: Adam learning rate (at the start of each phase).", lower_bound=0.0)
flags.DEFINE_enum("seg_lr_schedule", "poly", ["poly", "constant"], "segment: learning rate over each phase "
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
    """Settings of the segment stage (flags above; ``common`` holds the shared ones)."""

    common: CommonConfig
    mode: str
    site: str
    folds: int
    unet: str
    batch_size: int
    steps: int
    pretrain_steps: int
    lr: float
    base_filters: int
    val_every: int
    synthetic_dir: str = ""
    augment: bool = True
    patch_size: int = 0
    lr_schedule: str = "poly"

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
        if not os.path.isdir(FLAGS.synthetic_dir):
            raise UserInputError(f"--synthetic_dir={FLAGS.synthetic_dir}: no such folder")
        if FLAGS.seg_pretrain_steps == 0:
            raise UserInputError("--mode=finetune needs --seg_pretrain_steps > 0 (0 would train without pre-training)")
    elif FLAGS.synthetic_dir:
        raise UserInputError(f"--synthetic_dir is only used with --mode=finetune, not --mode={FLAGS.mode}")
    return SegmentConfig(
        common=common, mode=FLAGS.mode, site=FLAGS.site, folds=FLAGS.folds, unet=FLAGS.unet,
        batch_size=FLAGS.seg_batch_size, steps=FLAGS.seg_steps,
        pretrain_steps=FLAGS.seg_pretrain_steps if FLAGS.mode == "finetune" else 0, lr=FLAGS.seg_lr,
        base_filters=FLAGS.seg_base_filters, val_every=FLAGS.val_every, synthetic_dir=FLAGS.synthetic_dir,
        augment=FLAGS.seg_augment, patch_size=FLAGS.seg_patch_size, lr_schedule=FLAGS.seg_lr_schedule,
    )


@dataclass(frozen=True)
class Volumes:
    """A set of labelled volumes.

    Attributes:
        ids: case ids, one per volume.
        images: ``[N, Z, Y, X]`` float32 images (normalised intensities, e.g. [-1, 1]).
        labels: ``[N, Z, Y, X]`` uint8 labels; the target is ``label > 0``.
    """

    ids: tuple[str, ...]
    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.shape != self.labels.shape or self.images.ndim != 4 or len(self.ids) != len(self.images):
            raise ValueError(f"Volumes need [N, Z, Y, X] images and labels with N ids, got {len(self.ids)} ids, "
                             f"{self.images.shape} and {self.labels.shape}")


@dataclass(frozen=True)
class FoldData:
    """What one fold trains, selects and tests on (``pretrain``: synthetic volumes, or None)."""

    train: Volumes
    val: Volumes
    test: Volumes
    pretrain: Volumes | None = None


def volumes_from_cases(cases: dict[str, Case], ids: list[str], what: str) -> Volumes:
    """Stack the labelled :class:`~fedsim_tf.data.case.Case` objects ``cases[id]`` of ``ids``."""
    missing = [i for i in ids if i not in cases or cases[i].label is None]
    if missing or not ids:
        raise UserInputError(f"{what}: no labelled volumes for case ids {missing or ids}")
    return Volumes(tuple(ids), np.stack([cases[i].image for i in ids]).astype(np.float32),
                   np.stack([cases[i].label for i in ids]).astype(np.uint8))


def _model_seed(seed: int, fold: int) -> int:
    return int(np.random.SeedSequence([seed, fold]).generate_state(1)[0] % (2**31 - 1))


FOREGROUND_PATCH_FRACTION = 1.0 / 3.0
PRETRAINED_WEIGHTS = "pretrained.weights.h5"


def crop_patch(
    image: np.ndarray, label: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A random ``size``\ :sup:`3` patch of an ``[Z, Y, X]`` pair (nnU-Net-style sampling).

    With probability :data:`FOREGROUND_PATCH_FRACTION` (and a non-empty label) the patch is
    centred on a random foreground voxel (shifted to stay inside), otherwise its corner is
    uniform. ``size`` must not exceed any axis.
    """
    shape = np.asarray(image.shape)
    if size > shape.min():
        raise ValueError(f"patch size {size} exceeds the volume shape {tuple(shape)}")
    foreground = np.argwhere(label > 0) if rng.random() < FOREGROUND_PATCH_FRACTION else np.empty((0, 3))
    if len(foreground):
        corner = foreground[rng.integers(len(foreground))] - size // 2
    else:
        corner = rng.integers(0, shape - size + 1)
    corner = np.clip(corner, 0, shape - size)
    window = tuple(slice(int(c), int(c) + size) for c in corner)
    return image[window], label[window]


def draw_batch(
    source: Volumes,
    batch_size: int,
    rng: np.random.Generator,
    augmentation: AugmentationConfig | None,
    patch_size: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A random training batch: ``[B, P, P, P, 1]`` float32 images and ``[B, P, P, P]`` uint8 labels.

    ``P`` is ``patch_size`` (or the whole ``[Z, Y, X]`` volume when 0). Volumes are drawn without
    replacement while the set is large enough, then with replacement; each is augmented whole,
    then cropped (:func:`crop_patch`).
    """
    picks = rng.choice(len(source.ids), size=batch_size, replace=batch_size > len(source.ids))
    images, labels = [], []
    for index in picks:
        image, label = source.images[index], source.labels[index]
        if augmentation is not None:
            image, label = augment(image, label, rng, augmentation)
        if patch_size:
            image, label = crop_patch(image, label, patch_size, rng)
        images.append(image)
        labels.append(label)
    return np.stack(images)[..., None].astype(np.float32), np.stack(labels)


def predict_masks(model: keras.Model, volumes: Volumes, patch_size: int = 0) -> np.ndarray:
    """Foreground masks ``[N, Z, Y, X]`` bool (logit > 0), one volume at a time (inference mode).

    ``patch_size`` > 0: ``model`` takes ``patch_size``\ :sup:`3` inputs and each volume is predicted
    by sliding windows (:mod:`fedsim_tf.models.sliding_window`); 0: ``model`` takes whole volumes.
    """
    if patch_size:
        return np.stack([sliding_window_logits(model, image, patch_size)[..., 0] > 0.0 for image in volumes.images])
    return np.stack([model(image[None, ..., None], training=False).numpy()[0, ..., 0] > 0.0
                     for image in volumes.images])


class _Segmenter:
    """The trained model (input: the patch, or the whole volume without patches), a copy holding the
    best weights, the optimiser and the compiled train step."""

    def __init__(self, config: SegmentConfig, volume_shape: tuple[int, int, int], fold: int) -> None:
        keras.utils.set_random_seed(_model_seed(config.common.seed, fold))
        train_shape = (config.patch_size,) * 3 if config.patch_size else volume_shape
        self.model = build_unet3d(config.unet, train_shape, config.base_filters)
        self.best = build_unet3d(config.unet, train_shape, config.base_filters)
        power = POLY_POWER if config.lr_schedule == "poly" else 0.0
        self.schedule = PhasedPolyDecay(config.lr, (config.pretrain_steps, config.steps), power)
        self.optimizer = keras.optimizers.Adam(learning_rate=self.schedule)
        self.optimizer.build(self.model.trainable_variables)
        self.best_dice = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_dice")
        self.best_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_step")
        self.keep_best(0, -1.0)

    def _copy_weights(self, target: keras.Model) -> None:
        for destination, source in zip(target.weights, self.model.weights):
            destination.assign(source)

    def keep_best(self, step: int, dice: float) -> None:
        """Make the current weights the best ones (validation Dice ``dice`` at ``step``)."""
        self._copy_weights(self.best)
        self.best_dice.assign(dice)
        self.best_step.assign(step)

    @tf.function(reduce_retracing=True)
    def train_step(self, images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = dice_ce_loss(labels, self.model(images, training=True))
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss


def train_fold(
    config: SegmentConfig, data: FoldData, fold: int, fold_dir: str, log_dir: str
) -> dict[str, object]:
    """Train, select and test one fold (resuming from ``fold_dir/checkpoints`` when present).

    Args:
        config: stage settings (``pretrain_steps`` > 0 needs ``data.pretrain``).
        data: the fold's volumes, all ``[N, Z, Y, X]`` on one grid size.
        fold: fold index (seeds the weights and the data order).
        fold_dir: the fold's folder: ``checkpoints/`` and, after pre-training,
            :data:`PRETRAINED_WEIGHTS` (the model's weights when the last pre-training step ends).
        log_dir: TensorBoard folder of the fold.

    Returns:
        The fold record of :func:`fedsim_tf.evaluation.report.fold_entry` (per-volume test Dice of
        the best-validation weights).
    """
    if config.pretrain_steps and data.pretrain is None:
        raise ValueError("pretrain_steps > 0 needs FoldData.pretrain volumes")
    segmenter = _Segmenter(config, tuple(data.train.images.shape[1:]), fold)
    checkpoint = StageCheckpoint(
        os.path.join(fold_dir, "checkpoints"), model=segmenter.model, best_model=segmenter.best,
        optimizer=segmenter.optimizer, best_dice=segmenter.best_dice, best_step=segmenter.best_step,
    )
    start = checkpoint.restore_latest()
    total = config.pretrain_steps + config.steps
    augmentation = AugmentationConfig() if config.augment else None
    summaries = Summaries(log_dir)
    progress = Progress(f"segment {config.mode} fold {fold}", total, start)
    loss_value = float("nan")
    for step in range(start, total):
        source = data.pretrain if step < config.pretrain_steps else data.train
        rng = np.random.default_rng([config.common.seed, fold, step])
        images, labels = draw_batch(source, config.batch_size, rng, augmentation, config.patch_size)
        loss_value = float(segmenter.train_step(tf.constant(images), tf.constant(labels)))
        done = step + 1
        values = {"loss": loss_value, "lr": float(segmenter.schedule(step))}
        tuning = done > config.pretrain_steps
        if tuning and ((done - config.pretrain_steps) % config.val_every == 0 or done == total):
            masks = predict_masks(segmenter.model, data.val, config.patch_size)
            val_dice = mean_dice(dice_per_volume(masks, data.val.labels))
            values["val_dice"] = val_dice
            if val_dice > float(segmenter.best_dice.numpy()):
                segmenter.keep_best(done, val_dice)
            summaries.images(done, {"val_prediction": middle_slice_image(masks[0], (0.0, 1.0)),
                                    "val_label": middle_slice_image(data.val.labels[0] > 0, (0.0, 1.0))})
        summaries.scalars(done, values)
        progress.update(done, **values)
        if done == config.pretrain_steps:
            segmenter.model.save_weights(os.path.join(fold_dir, PRETRAINED_WEIGHTS))
        if done % config.val_every == 0 or done in (config.pretrain_steps, total):
            checkpoint.save(done)
    summaries.flush()
    test_dice = dice_per_volume(predict_masks(segmenter.best, data.test, config.patch_size), data.test.labels)
    return report.fold_entry(fold, dict(zip(data.test.ids, test_dice.tolist())),
                             float(segmenter.best_dice.numpy()), int(segmenter.best_step.numpy()), total)


def _pick_site(sites: list[Site], name: str) -> Site:
    """The site called ``name`` (site name or folder name), or the first when ``name`` is empty."""
    if not name:
        return sites[0]
    for site in sites:
        if name in (site.name, os.path.basename(os.path.normpath(str(site.folder)))):
            return site
    raise UserInputError(f"--site={name}: no such site; available: {', '.join(s.name for s in sites)}")


def _pretrain_volumes(config: SegmentConfig) -> Volumes | None:
    """Every labelled volume of ``--synthetic_dir`` (preprocessed like a site) for finetune, else None."""
    if config.mode != "finetune":
        return None
    common = dataclasses.replace(config.common, data_dirs=(config.synthetic_dir,))
    synthetic = inputs.load_sites(common)[0]
    ids = [case_id for case_id, case in synthetic.cases.items() if case.label is not None]
    return volumes_from_cases(synthetic.cases, ids, f"--synthetic_dir={config.synthetic_dir}")


def _synthetic_name(config: SegmentConfig) -> str:
    return os.path.basename(os.path.normpath(config.synthetic_dir))


def method_name(config: SegmentConfig) -> str:
    """Table 3 row name: "Lower Bound", "Upper Bound" or "Pre-train <synthetic folder name>"."""
    if config.mode in METHOD_NAMES:
        return METHOD_NAMES[config.mode]
    return f"Pre-train {_synthetic_name(config)}"


def run_name(config: SegmentConfig, site: str, label_size: int) -> str:
    """``segment_<mode>_<site>_L<label_size>_<unet>``, plus ``_<synthetic folder name>`` for finetune."""
    name = f"segment_{config.mode}_{site}_L{label_size}_{config.unet}"
    return f"{name}_{_synthetic_name(config)}" if config.mode == "finetune" else name


def run(config: SegmentConfig) -> dict[str, object]:
    """Run the configured folds (skipping finished ones) and write the run's results.

    Returns:
        The run record (schema in :mod:`fedsim_tf.evaluation.report`).
    """
    site = _pick_site(inputs.load_sites(config.common), config.site)
    try:
        splits = inputs.splits_for(site, config.common)
    except ValueError as error:
        raise UserInputError(f"site {site.name} ({site.folder}): {error}") from error
    n_folds = len(splits["folds"])
    for fold in config.fold_indices():
        if fold >= n_folds:
            raise UserInputError(f"--fold/--folds: site {site.name} has {n_folds} folds (0..{n_folds - 1}), "
                                 f"fold {fold} requested")
    label_size = inputs.label_size_for(site, splits, config.common)
    # Every fold has the same number of training volumes (fedsim_tf.data.splits.split_sizes).
    size = len(splits["folds"][0]["train"]) if config.mode == "upper" else label_size
    name = run_name(config, site.name, size)
    pretrain = _pretrain_volumes(config)
    results = []
    for fold in config.fold_indices():
        fold_dir = os.path.join(config.common.work_dir, "segment", name, f"fold{fold}")
        result_path = os.path.join(fold_dir, "result.json")
        if os.path.exists(result_path):
            logging.info("segment %s fold %d: finished earlier, reading %s", config.mode, fold, result_path)
            with open(result_path, encoding="utf-8") as stream:
                results.append(json.load(stream))
            continue
        try:
            ids = fold_split(splits, fold, size)
        except ValueError as error:
            raise UserInputError(f"--label_size={size}: {error}") from error
        data = FoldData(
            train=volumes_from_cases(site.cases, ids["train_labelled"], f"site {site.name} fold {fold} train"),
            val=volumes_from_cases(site.cases, ids["val"], f"site {site.name} fold {fold} val"),
            test=volumes_from_cases(site.cases, ids["test"], f"site {site.name} fold {fold} test"),
            pretrain=pretrain,
        )
        if pretrain is not None and pretrain.images.shape[1:] != data.train.images.shape[1:]:
            raise UserInputError(f"--synthetic_dir={config.synthetic_dir}: volumes of size "
                                 f"{pretrain.images.shape[1:]} differ from the site's {data.train.images.shape[1:]}")
        log_dir = os.path.join(config.common.work_dir, "logs", "segment", name, f"fold{fold}")
        result = train_fold(config, data, fold, fold_dir, log_dir)
        report.write_json_atomic(result_path, result)
        logging.info("segment %s fold %d: test Dice %.4f +- %.4f", config.mode, fold, result["mean"], result["std"])
        results.append(result)
    pretrain_record = None if pretrain is None else {
        "source": config.synthetic_dir, "cases": list(pretrain.ids), "steps": config.pretrain_steps}
    record = report.build_report(name, method_name(config), site.name, size, config.common.seed,
                                 config.to_json(), results, pretrain=pretrain_record)
    json_path, table_path = report.write_report(os.path.join(config.common.work_dir, "results"), record)
    logging.info("segment %s: Dice %s %% over %d volumes; results %s, table %s", config.mode,
                 report.format_cell(record["mean"], record["std"]),
                 sum(len(r["test_dice"]) for r in results), json_path, table_path)
    return record
