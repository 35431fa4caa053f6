"""Shape op: labels/mask forward, central finite-difference gradients through tf.GradientTape."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from fedsim_tf.grid import Grid
from fedsim_tf.shape.pose import apply_pose
from fedsim_tf.shape.parameters import FiniteDifferenceSteps
from fedsim_tf.shape.shape_op import ShapeRenderer, render_one_hot, render_shapes
from fedsim_tf.shape.voxelize import heart_mask, voxelize
from tests.shape.toy_heart import ToySSM

N_MODES = 4
P = N_MODES + 7
ROT, TRANS, LOGS = slice(N_MODES, N_MODES + 3), slice(N_MODES + 3, N_MODES + 6), N_MODES + 6


@pytest.fixture(scope="module")
def ssm() -> ToySSM:
    return ToySSM()


def grid_of(n: int) -> Grid:
    return Grid.centred(n, 84.0, centre_mm=(2.0, 0.0, 6.0))  # holds the toy heart with a margin


def reference_mask(ssm: ToySSM, params: np.ndarray, grid: Grid) -> np.ndarray:
    """Float64 mask of one parameter vector, built without the op: instance, pose, voxelise."""
    heart = ssm.mean.with_stacked_vertices(ssm.instance_vertices(params[None, :N_MODES])[0])
    return heart_mask(apply_pose(heart, params[N_MODES:], ssm.mean.centre()), grid).astype(np.float64)


def iou_loss_np(mask: np.ndarray, target: np.ndarray) -> float:
    inter = np.sum(mask * target)
    return float(1.0 - inter / (mask.sum() + target.sum() - inter))


def iou_loss_tf(mask: tf.Tensor, target: np.ndarray) -> tf.Tensor:
    inter = tf.reduce_sum(mask * target)
    return 1.0 - inter / (tf.reduce_sum(mask) + float(target.sum()) - inter)


def tape_gradient(renderer: ShapeRenderer, params: np.ndarray, loss_fn) -> tuple[np.ndarray, np.ndarray]:
    p = tf.constant(params, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(p)
        _, mask = render_shapes(p, renderer)
        loss = loss_fn(mask)
    return loss.numpy(), tape.gradient(loss, p).numpy()


def test_translation_gradient_is_exact_and_log_scale_analytic(ssm: ToySSM) -> None:
    # d/dt sum_{v in S + t} x_v = |S| (voxels) along x, 0 along y, z; a one-voxel step shifts
    # the mask exactly, so the FD value is exact. Scaling: d|sS|/d log s = 3 |S|.
    grid = grid_of(40)
    renderer = ShapeRenderer(ssm, grid)  # translation step: one voxel
    params = np.zeros((1, P))
    params[0, :N_MODES] = [0.5, -0.3, 0.2, 0.4]
    n_voxels = reference_mask(ssm, params[0], grid).sum()
    coords = grid.voxel_centres()
    for axis in range(3):
        f = coords[..., axis].astype(np.float32)
        _, grad = tape_gradient(renderer, params, lambda m: tf.reduce_sum(m * f))
        expected = np.zeros(3)
        expected[axis] = n_voxels
        np.testing.assert_allclose(grad[0, TRANS], expected, rtol=1e-6, atol=1e-3)
    _, grad = tape_gradient(renderer, params, tf.reduce_sum)
    np.testing.assert_allclose(grad[0, TRANS], 0.0, atol=1e-6)
    assert grad[0, LOGS] == pytest.approx(3.0 * n_voxels, rel=0.04)


def test_matches_finer_step_reference(ssm: ToySSM) -> None:
    grid = grid_of(48)
    renderer = ShapeRenderer(ssm, grid)
    rng = np.random.default_rng(1)
    target_params = np.concatenate([rng.normal(size=N_MODES), [0.1, -0.08, 0.05, 3.0, -2.0, 2.5, 0.05]])
    target = reference_mask(ssm, target_params, grid)
    params = np.zeros((1, P))
    _, grad = tape_gradient(renderer, params, lambda m: iou_loss_tf(m, target))
    grad = grad[0].astype(np.float64)

    half = renderer.steps / 2  # finer steps: half of the op's
    ref = np.empty(P)
    for i in range(P):
        e = np.zeros(P)
        e[i] = half[i]
        plus = iou_loss_np(reference_mask(ssm, params[0] + e, grid), target)
        minus = iou_loss_np(reference_mask(ssm, params[0] - e, grid), target)
        ref[i] = (plus - minus) / (2 * half[i])
    norm_ref = np.linalg.norm(ref)
    assert np.linalg.norm(grad) / norm_ref == pytest.approx(1.0, abs=0.10)
    assert grad @ ref / (np.linalg.norm(grad) * norm_ref) > 0.99
    big = np.abs(ref) > 0.05 * norm_ref
    assert big.sum() >= 4
    np.testing.assert_array_equal(np.sign(grad[big]), np.sign(ref[big]))


def test_gradient_descent_reduces_iou_loss(ssm: ToySSM) -> None:
    grid = grid_of(32)
    renderer = ShapeRenderer(ssm, grid)
    rng = np.random.default_rng(3)
    target_params = np.concatenate([rng.normal(size=N_MODES), [0.12, -0.1, 0.08, 4.0, -3.0, 3.0, 0.06]])
    target = reference_mask(ssm, target_params, grid)
    # Optimise u = params / scale with scale = 4 FD steps (1 std, 0.12 rad, 4 voxels, 0.08).
    scale = tf.constant(4.0 * renderer.steps[None], tf.float32)
    u = tf.Variable(tf.zeros((1, P)))
    optimizer = keras.optimizers.Adam(learning_rate=0.2)

    @tf.function
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            _, mask = render_shapes(u * scale, renderer)
            loss = iou_loss_tf(mask, target)
        optimizer.apply_gradients([(tape.gradient(loss, u), u)])
        return loss

    losses = [float(step()) for _ in range(10)]
    params = (u * scale).numpy()[0].astype(np.float64)
    final = iou_loss_np(reference_mask(ssm, params, grid), target)
    print("IoU loss per step", np.round(losses, 3), "final", round(final, 3))
    assert losses[0] > 0.3  # the start really is far from the target
    assert final < 0.5 * losses[0]


def test_forward_in_tf_function_batch(ssm: ToySSM) -> None:
    grid = grid_of(24)
    renderer = ShapeRenderer(ssm, grid, FiniteDifferenceSteps(translation_mm=2.0))
    params = np.array([[0.0] * P, [1.0, -1.0, 0.5, 0.0, 0.2, -0.1, 0.3, 2.0, 1.0, -3.0, 0.1]])

    @tf.function(input_signature=[tf.TensorSpec([2, P], tf.float32)])
    def render(p: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(p)
            labels, mask = render_shapes(p, renderer)
            loss = tf.reduce_sum(mask[1])  # depends on sample 1 only
        return labels, mask, tape.gradient(loss, p)

    labels, mask, grad = (t.numpy() for t in render(tf.constant(params, tf.float32)))
    assert labels.dtype == np.int32 and labels.shape == (2,) + grid.shape
    assert mask.dtype == np.float32 and set(np.unique(mask)) == {0.0, 1.0}
    np.testing.assert_array_equal(mask, labels > 0)
    for b in range(2):
        p = params[b].astype(np.float32).astype(np.float64)
        heart = ssm.mean.with_stacked_vertices(ssm.instance_vertices(p[None, :N_MODES])[0])
        np.testing.assert_array_equal(labels[b], voxelize(apply_pose(heart, p[N_MODES:], ssm.mean.centre()), grid))
    assert np.all(grad[0] == 0) and np.any(grad[1] != 0)
    assert renderer.steps[TRANS].tolist() == [2.0, 2.0, 2.0]


def test_bad_input(ssm: ToySSM) -> None:
    renderer = ShapeRenderer(ssm, grid_of(8))
    with pytest.raises(ValueError, match=rf"\[B, {P}\]"):
        render_shapes(tf.zeros((1, P + 1)), renderer)
    with pytest.raises(ValueError, match="upstream"):
        renderer.mask_vjp(np.zeros((1, P)), np.zeros((1, 4, 4, 4)))
    with pytest.raises(ValueError, match="mode_std"):
        FiniteDifferenceSteps(mode_std=-0.1)


def test_default_ssm_renders_and_differentiates(tmp_path) -> None:
    from fedsim_tf.shape.ssm import default_ssm

    model = default_ssm(cache_dir=tmp_path)
    centre = model.mean.centre()
    grid = Grid.centred(24, 160.0, centre_mm=tuple(centre))
    renderer = ShapeRenderer(model, grid)
    assert renderer.num_params == model.n_modes + 7 == 21
    target = np.asarray(render_shapes(tf.constant(np.full((1, 21), 0.0), tf.float32), renderer)[0][0] > 0, float)
    params = np.zeros((1, 21))
    params[0, :3] = [1.5, -1.0, 1.0]
    params[0, 17:20] = [6.0, 0.0, 0.0]
    loss, grad = tape_gradient(renderer, params, lambda m: iou_loss_tf(m, target))
    assert set(np.unique(renderer.labels(params)[0])) == set(range(8))
    assert loss > 0.05 and np.all(np.isfinite(grad))
    assert grad[0, 17] > 0  # moving back (-x) towards the target lowers the loss
    assert np.any(grad[0, :3] != 0)


def reference_one_hot(ssm: ToySSM, params: np.ndarray, grid: Grid) -> np.ndarray:
    """Float64 one-hot label map of one parameter vector, built without the op."""
    heart = ssm.mean.with_stacked_vertices(ssm.instance_vertices(params[None, :N_MODES])[0])
    return np.eye(8)[voxelize(apply_pose(heart, params[N_MODES:], ssm.mean.centre()), grid)]


def test_one_hot_gradient_is_the_central_difference_of_the_one_hot_map(ssm: ToySSM) -> None:
    grid = grid_of(20)
    steps = FiniteDifferenceSteps(mode_std=0.3, rotation_rad=0.05, translation_mm=2.0, log_scale=0.03)
    renderer = ShapeRenderer(ssm, grid, steps)
    rng = np.random.default_rng(4)
    params = np.zeros((1, P))
    params[0, :N_MODES] = rng.normal(0, 0.5, N_MODES)
    upstream = rng.normal(size=(1, *grid.shape, 8))
    x = tf.Variable(params.astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(render_one_hot(x, renderer) * tf.constant(upstream, tf.float32))
    gradient = tape.gradient(loss, x).numpy()[0]
    h = steps.vector(N_MODES, grid)
    for i in (0, N_MODES + 1, N_MODES + 3, P - 1):  # a mode, a rotation, a translation, the log-scale
        plus, minus = params[0].copy(), params[0].copy()
        plus[i] += h[i]
        minus[i] -= h[i]
        difference = np.sum(upstream[0] * (reference_one_hot(ssm, plus, grid) - reference_one_hot(ssm, minus, grid)))
        assert gradient[i] == pytest.approx(difference / (2 * h[i]), rel=1e-4, abs=1e-3)
    # With an upstream gradient on the background channel only, the one-hot map's gradient is minus the
    # heart mask's (the mask is 1 - background).
    background = np.zeros_like(upstream)
    background[..., 0] = upstream[..., 0]
    np.testing.assert_allclose(renderer.one_hot_vjp(params, background),
                               -renderer.mask_vjp(params, upstream[..., 0]), rtol=1e-9, atol=1e-9)
