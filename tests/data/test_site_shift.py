"""Site shift between phantom hospitals: a U-Net trained on one site loses Dice on another.

Slow (about 5 min on 2 cores): generates the small preset of CT20 (adult, 120 kVp, sharp
kernel, high dose) and CT34LC (paediatric, 80 kVp, low dose, cardiac motion), 6 volumes each,
trains a small binary (whole-heart) U-Net on CT20 volumes 1-4 and scores it on CT20 volumes 5-6
and on all six CT34LC volumes.
"""

import nibabel as nib
import numpy as np
import pytest
import keras
import tensorflow as tf

from fedsim_tf.data import phantoms
from fedsim_tf.evaluation.dice import dice_per_volume
from fedsim_tf.losses.segmentation import dice_ce_loss
from fedsim_tf.models.unet3d import build_unet3d

HU_WINDOW = (-200.0, 800.0)
STEPS = 300


def _site(folder) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for image_path in sorted(folder.glob("*_image.nii.gz")):
        label_path = image_path.with_name(image_path.name.replace("_image", "_label"))
        image = np.asarray(nib.load(str(image_path)).dataobj, dtype=np.float32).transpose(2, 1, 0)
        low, high = HU_WINDOW
        images.append(2.0 * (np.clip(image, low, high) - low) / (high - low) - 1.0)
        labels.append(np.asarray(nib.load(str(label_path)).dataobj).transpose(2, 1, 0) > 0)
    return np.stack(images)[..., None], np.stack(labels).astype(np.int32)


@pytest.mark.slow
def test_unet_trained_on_ct20_loses_dice_on_ct34lc(tmp_path):
    folders = phantoms.ensure_phantom_hospitals(tmp_path, small=True, sites=["CT20", "CT34LC"], volumes_per_site=6,
                                                workers=2)
    (train_x, train_y), (other_x, other_y) = (_site(f) for f in folders)
    keras.utils.set_random_seed(0)
    model = build_unet3d("cicek", train_x.shape[1:4], base_filters=8, num_classes=1, levels=3)
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = dice_ce_loss(y, model(x, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    rng = np.random.default_rng(0)
    for _ in range(STEPS):
        k = rng.integers(0, 4)
        step(train_x[k : k + 1], train_y[k : k + 1])

    def dice(x, y):
        probabilities = np.concatenate([tf.sigmoid(model(x[k : k + 1])).numpy()[..., 0] for k in range(len(x))])
        return dice_per_volume(probabilities, y)

    same, other = dice(train_x[4:], train_y[4:]), dice(other_x, other_y)
    print(f"Dice trained on CT20: CT20 held-out {same.round(3)} (mean {same.mean():.3f}), "
          f"CT34LC {other.round(3)} (mean {other.mean():.3f})")
    assert same.mean() > 0.6
    # measured (seed 0, 2 cores): CT20 held-out 0.803, CT34LC 0.776; a loss, if a small one
    assert other.mean() < same.mean()
