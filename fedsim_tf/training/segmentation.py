"""Training of the 3D U-Net of the Table 3 protocol: one fold, resumable, validated, tested.

The target is ``label > 0`` (the whole heart). Loss: soft Dice + cross-entropy 1:1, with random
augmentation (:mod:`fedsim_tf.training.augmentation`); Adam with nnU-Net's poly learning-rate decay,
restarted for the fine-tuning phase (:mod:`fedsim_tf.training.schedules`). With a patch size the
model trains on patches (nnU-Net-style sampling, :func:`crop_patch`) and predicts whole volumes by
overlapping sliding windows (:mod:`fedsim_tf.models.sliding_window`). Every ``val_every`` steps of the
(fine-)tuning phase the model is scored on the fold's validation volumes and the weights with the
best mean validation Dice are kept; they are scored per volume on the fold's test volumes.

Determinism: weights are initialised from ``keras.utils.set_random_seed`` of a seed derived from
``(seed, fold)``; the batch drawn and its augmentation at step ``t`` come from a NumPy generator
seeded with ``(seed, fold, t)``, so a resumed fold sees the same data as an uninterrupted one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from fedsim_tf.atomic import atomic_path
from fedsim_tf.data.case import Case
from fedsim_tf.errors import UserInputError
from fedsim_tf.evaluation import report
from fedsim_tf.evaluation.dice import dice_per_volume, mean_dice
from fedsim_tf.losses.segmentation import dice_ce_loss
from fedsim_tf.models.sliding_window import sliding_window_logits
from fedsim_tf.models.unet3d import build_unet3d
from fedsim_tf.training.augmentation import AugmentationConfig, augment
from fedsim_tf.training.checkpoints import StageCheckpoint
from fedsim_tf.training.progress import Progress
from fedsim_tf.training.schedules import POLY_POWER, PhasedPolyDecay
from fedsim_tf.training.segmentation_settings import SegmentationSettings
from fedsim_tf.training.summaries import Summaries, middle_slice_image


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


def save_weights_atomic(model: keras.Model, path: str) -> None:
    """``model.save_weights(path)`` (a ``.weights.h5`` file) under a temporary name, then renamed, so a crash
    leaves the previous file or none (:func:`fedsim_tf.atomic.atomic_path`)."""
    with atomic_path(path, suffix=".weights.h5") as temporary:
        model.save_weights(str(temporary))


def model_seed(seed: int, fold: int) -> int:
    """The seed of a fold's initial U-Net weights (:func:`keras.utils.set_random_seed`), from ``(seed, fold)``."""
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


def build_model(settings: SegmentationSettings, volume_shape: tuple[int, int, int]) -> keras.Model:
    """The U-Net of ``settings`` (weights from Keras' global generators): its input is the training patch
    (``patch_size``\ :sup:`3`), or the whole ``volume_shape`` ``(Z, Y, X)`` volume without patches."""
    train_shape = (settings.patch_size,) * 3 if settings.patch_size else volume_shape
    return build_unet3d(settings.unet, train_shape, settings.base_filters)


def load_best_model(settings: SegmentationSettings, volume_shape: tuple[int, int, int], fold_dir: str) -> keras.Model:
    """The weights a fold of :func:`train_fold` selected on validation and tested (``best_model`` of the
    latest checkpoint in ``fold_dir/checkpoints``), in a U-Net of :func:`build_model`.

    Raises:
        UserInputError: naming the folder when it holds no checkpoint (or an unreadable one).
    """
    directory = os.path.join(fold_dir, "checkpoints")
    if not os.path.isfile(os.path.join(directory, "checkpoint")):
        raise UserInputError(f"{directory}: no segmentation checkpoint; train that fold first")
    model = build_model(settings, volume_shape)
    StageCheckpoint(directory, best_model=model).restore_latest()
    return model


class Segmenter:
    """The trained model (input: the patch, or the whole volume without patches), a copy holding the
    best weights, the optimiser and the compiled train step."""

    def __init__(self, settings: SegmentationSettings, volume_shape: tuple[int, int, int], fold: int) -> None:
        keras.utils.set_random_seed(model_seed(settings.seed, fold))
        self.model = build_model(settings, volume_shape)
        self.best = build_model(settings, volume_shape)
        power = POLY_POWER if settings.lr_schedule == "poly" else 0.0
        self.schedule = PhasedPolyDecay(settings.lr, (settings.pretrain_steps, settings.steps), power)
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
    settings: SegmentationSettings,
    data: FoldData,
    fold: int,
    fold_dir: str,
    log_dir: str,
    name: str = "segment",
    initial_weights: str | None = None,
) -> dict[str, object]:
    """Train, select and test one fold (resuming from ``fold_dir/checkpoints`` when present).

    Args:
        settings: trainer settings (``pretrain_steps`` > 0 needs ``data.pretrain``).
        data: the fold's volumes, all ``[N, Z, Y, X]`` on one grid size.
        fold: fold index (seeds the weights and the data order).
        fold_dir: the fold's folder: ``checkpoints/`` and, after pre-training,
            :data:`PRETRAINED_WEIGHTS` (the model's weights when the last pre-training step ends).
        log_dir: TensorBoard folder of the fold.
        name: what the progress lines call the run.
        initial_weights: a ``.weights.h5`` file of the same U-Net (e.g. federated training's) that the
            model starts from instead of its seeded initialisation; used only when ``fold_dir`` has no
            checkpoint yet (a resumed fold continues from its checkpoint).

    Returns:
        The fold record of :func:`fedsim_tf.evaluation.report.fold_entry` (per-volume test Dice of
        the best-validation weights).
    """
    if settings.pretrain_steps and data.pretrain is None:
        raise ValueError("pretrain_steps > 0 needs FoldData.pretrain volumes")
    segmenter = Segmenter(settings, tuple(data.train.images.shape[1:]), fold)
    checkpoint = StageCheckpoint(
        os.path.join(fold_dir, "checkpoints"), model=segmenter.model, best_model=segmenter.best,
        optimizer=segmenter.optimizer, best_dice=segmenter.best_dice, best_step=segmenter.best_step,
    )
    start = checkpoint.restore_latest()
    if start == 0 and initial_weights is not None:
        segmenter.model.load_weights(initial_weights)
        segmenter.keep_best(0, -1.0)
    total = settings.total_steps
    augmentation = AugmentationConfig() if settings.augment else None
    summaries = Summaries(log_dir)
    progress = Progress(f"{name} fold {fold}", total, start)
    for step in range(start, total):
        source = data.pretrain if step < settings.pretrain_steps else data.train
        rng = np.random.default_rng([settings.seed, fold, step])
        images, labels = draw_batch(source, settings.batch_size, rng, augmentation, settings.patch_size)
        loss = float(segmenter.train_step(tf.constant(images), tf.constant(labels)))
        done = step + 1
        values = {"loss": loss, "lr": float(segmenter.schedule(step))}
        tuning = done > settings.pretrain_steps
        if tuning and ((done - settings.pretrain_steps) % settings.val_every == 0 or done == total):
            masks = predict_masks(segmenter.model, data.val, settings.patch_size)
            val_dice = mean_dice(dice_per_volume(masks, data.val.labels))
            values["val_dice"] = val_dice
            if val_dice > float(segmenter.best_dice.numpy()):
                segmenter.keep_best(done, val_dice)
            summaries.images(done, {"val_prediction": middle_slice_image(masks[0], (0.0, 1.0)),
                                    "val_label": middle_slice_image(data.val.labels[0] > 0, (0.0, 1.0))})
        summaries.scalars(done, values)
        progress.update(done, **values)
        if done == settings.pretrain_steps:
            save_weights_atomic(segmenter.model, os.path.join(fold_dir, PRETRAINED_WEIGHTS))
        if done % settings.val_every == 0 or done in (settings.pretrain_steps, total):
            checkpoint.save(done)
    summaries.flush()
    test_dice = dice_per_volume(predict_masks(segmenter.best, data.test, settings.patch_size), data.test.labels)
    return report.fold_entry(fold, dict(zip(data.test.ids, test_dice.tolist())),
                             float(segmenter.best_dice.numpy()), int(segmenter.best_step.numpy()), total)
