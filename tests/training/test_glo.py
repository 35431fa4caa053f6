"""GLO trainer: codes stay in the unit ball, codes outside the batch do not move (RMSprop without
momentum), and the total loss is the sum of its terms on hand-made tensors."""

import numpy as np
import pytest
import tensorflow as tf

from fedsim_tf.grid import Grid
from fedsim_tf.models.generators import build_material_generator, build_shape_generator
from fedsim_tf.physics.ct_simulator import CTSimulator, SimulatedCT
from fedsim_tf.physics.simulated_scanner import SimulatedScanner
from fedsim_tf.shape.parameters import ShapeBounds
from fedsim_tf.shape.shape_op import ShapeRenderer
from fedsim_tf.shape.ssm import default_ssm
from fedsim_tf.training.glo import GLOTargets, GLOTrainer, glo_losses
from fedsim_tf.training.glo_settings import GLOSettings

WATER = 0.1929


def _trainer(count: int, batch_size: int, lr_latent: float) -> GLOTrainer:
    """Untrained G_S/G_M on an 8^3 label grid (20 mm voxels), 4^3 coarse grid, 4 views; random targets."""
    ssm = default_ssm()
    simulator = CTSimulator(ShapeRenderer(ssm, Grid.centred(8, 160.0)), (4, 4, 4), (40.0,) * 3,
                            SimulatedScanner(views=4))
    rng = np.random.default_rng(5)
    masks = (rng.random((count, 8, 8, 8)) < 0.3).astype(np.float32)
    targets = GLOTargets(masks=masks, labels=masks.astype(np.uint8), coarse=rng.uniform(-1, 1, (count, 4, 4, 4))
                         .astype(np.float32), sites=("a",) * count, case_ids=tuple(map(str, range(count))))
    settings = GLOSettings(seed=1, batch_size=batch_size, lr_latent=lr_latent, lr_shape=1e-3, lr_material=1e-3)
    return GLOTrainer(build_shape_generator(4, 14, ShapeBounds(), hidden=8),
                      build_material_generator(4, 4, WATER, width=8), simulator, targets, settings, None)


def test_codes_are_projected_back_onto_the_unit_ball():
    # A latent step of 10 per coordinate (RMSprop's first step is about lr * sign(gradient)) throws the
    # batch's codes far outside the ball (norm about 20); the projection puts them back on the sphere.
    trainer = _trainer(count=3, batch_size=2, lr_latent=10.0)
    before = trainer.latents.numpy()
    indices, _ = trainer.train_step(0)
    norms = np.linalg.norm(trainer.latents.numpy(), axis=1)
    assert np.all(norms <= 1.0 + 1e-6)
    np.testing.assert_allclose(norms[indices], 1.0, atol=1e-6)
    assert not np.allclose(trainer.latents.numpy()[indices], before[indices], atol=1e-3)


def test_codes_outside_the_batch_do_not_move():
    # One code per step: with momentum (e.g. Adam) a code updated at step t keeps moving at t + 1
    # without data; RMSprop without momentum leaves it exactly where it was.
    trainer = _trainer(count=3, batch_size=1, lr_latent=0.05)
    moved = set()
    for step in range(4):
        before = trainer.latents.numpy()
        indices, _ = trainer.train_step(step)
        after = trainer.latents.numpy()
        others = [i for i in range(3) if i not in indices]
        np.testing.assert_array_equal(after[others], before[others])
        assert not np.array_equal(after[indices], before[indices])
        moved.update(int(i) for i in indices)
    assert len(moved) >= 2  # the steps really drew different codes


class _FixedPerceptual:
    """A stand-in perceptual loss with known per-volume values."""

    def __call__(self, generated: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        return tf.constant([0.3, 0.5])


def test_total_loss_is_the_sum_of_its_terms():
    generated_mask = np.zeros((2, 2, 2, 2), np.float32)
    real_mask = np.zeros((2, 2, 2, 2), np.float32)
    generated_mask[0, 0] = 1.0  # 4 voxels
    real_mask[0, 0, 0] = 1.0  # 2 voxels, both inside the generated 4: IoU = 2 / 4 = 0.5
    generated_mask[1] = real_mask[1] = 1.0  # identical: IoU 1
    generated_ct = np.zeros((2, 1, 1, 2), np.float32)
    generated_ct[0, 0, 0] = [0.5, -0.5]
    real_ct = np.zeros((2, 1, 1, 2), np.float32)
    real_ct[1, 0, 0] = [0.2, 0.4]
    generated = SimulatedCT(labels=None, mask=tf.constant(generated_mask), ct=tf.constant(generated_ct))
    losses, total = glo_losses(generated, tf.constant(real_mask), tf.constant(real_ct), _FixedPerceptual(), 2.0)
    np.testing.assert_allclose(losses["iou_loss"].numpy(), [0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(losses["mse"].numpy(), [0.25, 0.1], atol=1e-6)  # (0.25+0.25)/2, (0.04+0.16)/2
    # mean IoU loss 0.25 + mean MSE 0.175 + 2 * mean perceptual 0.4
    assert float(total) == pytest.approx(0.25 + 0.175 + 0.8, abs=1e-6)
    _, without = glo_losses(generated, tf.constant(real_mask), tf.constant(real_ct), None, 2.0)
    assert float(without) == pytest.approx(0.425, abs=1e-6)
