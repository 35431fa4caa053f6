"""GAN settings, trainer determinism/resume, the frozen-discriminator generator loss, and overfitting one slice."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from fedsim_tf.losses.generation import PerceptualBackbone, vgg19_features
from fedsim_tf.training.gan import GANTrainer, build_gan_models
from fedsim_tf.training.gan_settings import GANSettings

TINY = dict(ngf=4, num_upsamplings=2, spade_hidden=8, ndf=4, n_layers_d=2)


def _labelled_slice(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic labelled slice: ``(condition [1, S, S, 10], real [1, S, S, 1], coarse [1, S, S, 1])``.

    Three overlapping discs (labels 1-3) with their own intensities on a smooth background; the
    coarse channel is the real slice averaged over 4x4 blocks (what an upsampled coarse CT gives).
    """
    yy, xx = np.mgrid[:size, :size] / size
    labels = np.zeros((size, size), int)
    labels[(yy - 0.45) ** 2 + (xx - 0.4) ** 2 < 0.09] = 1
    labels[(yy - 0.55) ** 2 + (xx - 0.6) ** 2 < 0.03] = 2
    labels[(yy - 0.3) ** 2 + (xx - 0.7) ** 2 < 0.01] = 3
    real = np.array([-0.6, 0.5, -0.1, 0.9])[labels] + 0.2 * np.sin(6 * xx) * np.cos(4 * yy)
    coarse = real.reshape(size // 4, 4, size // 4, 4).mean(axis=(1, 3)).repeat(4, 0).repeat(4, 1)
    condition = np.concatenate([coarse[..., None], np.eye(8)[labels], np.full((size, size, 1), 0.5)], axis=-1)
    return (condition[None].astype(np.float32), real[None, ..., None].astype(np.float32),
            coarse[None, ..., None].astype(np.float32))


def _psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB on the [-1, 1] scale (peak-to-peak 2)."""
    return float(10 * np.log10(4.0 / np.mean((image.astype(np.float64) - reference) ** 2)))


def _step_batch(step: int, size: int = 16, batch: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([7, step])
    return (rng.uniform(-1, 1, (batch, size, size, 10)).astype(np.float32),
            rng.uniform(-1, 1, (batch, size, size, 1)).astype(np.float32))


def _trainer(seed: int, **overrides) -> GANTrainer:
    settings = GANSettings(**{**TINY, "seed": seed, **overrides})
    generator, discriminator = build_gan_models(settings, 16)
    return GANTrainer(generator, discriminator, settings)


def _state(trainer: GANTrainer) -> list[np.ndarray]:
    """Every variable a resumed run depends on: weights, spectral-norm vectors, Adam slots and counters."""
    variables = (trainer.generator.variables + trainer.discriminator.variables
                 + trainer.generator_optimizer.variables + trainer.discriminator_optimizer.variables)
    return [np.array(v.numpy()) for v in variables]


@pytest.mark.parametrize("field, value, message", [
    ("ngf", 0, r"GANSettings.ngf must be >= 1, got 0"),
    ("num_d", 2.0, r"GANSettings.num_d must be an integer, got 2.0"),
    ("lr_d", -1e-4, r"GANSettings.lr_d must be a finite number > 0"),
    ("lambda_feat", float("nan"), r"GANSettings.lambda_feat must be a finite number >= 0"),
    ("beta2", 1.0, r"GANSettings.beta2 must be in \[0, 1\)"),
    ("seed", -1, r"GANSettings.seed must be >= 0"),
])
def test_settings_reject_bad_values_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        GANSettings(**{field: value})


def test_settings_check_the_slice_size_and_load_without_tensorflow():
    GANSettings(num_upsamplings=5).check_image_size(128)
    with pytest.raises(ValueError, match=r"slice edge 100 is not a positive multiple of 2\*\*num_upsamplings = 32"):
        GANSettings(num_upsamplings=5).check_image_size(100)
    with pytest.raises(ValueError, match=r"slice edge 16 is not a positive multiple of 2\*\*num_upsamplings = 32"):
        build_gan_models(GANSettings(), 16)
    code = ("import sys; import fedsim_tf.training.gan_settings as s; s.GANSettings(); "
            "sys.exit(int(any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules)))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_loss_description_says_which_losses_run():
    off = _trainer(0)
    assert off.loss_names == ("g_hinge", "g_feat", "g_total", "d_real", "d_fake", "d_total")
    assert "VGG off (no perceptual backbone)" in off.describe_losses()
    assert "feature matching x10 over 2 scales" in off.describe_losses()
    settings = GANSettings(**TINY, lambda_vgg=2.5)
    generator, discriminator = build_gan_models(settings, 32)
    backbone = PerceptualBackbone(vgg19_features(None, 32), "random VGG-19 weights (test)")
    on = GANTrainer(generator, discriminator, settings, backbone)
    assert on.loss_names == ("g_hinge", "g_feat", "g_vgg", "g_total", "d_real", "d_fake", "d_total")
    assert "VGG x2.5 (random VGG-19 weights (test))" in on.describe_losses()
    condition, real, _ = _labelled_slice(32)
    losses = on.train_step(condition, real)
    assert losses["g_vgg"] > 0
    assert np.isclose(losses["g_total"], losses["g_hinge"] + losses["g_feat"] + losses["g_vgg"], rtol=1e-5)
    assert np.isclose(losses["d_total"], losses["d_real"] + losses["d_fake"], rtol=1e-6)
    muted = GANTrainer(generator, discriminator, GANSettings(**TINY, lambda_vgg=0.0), backbone)
    assert "VGG off (lambda_vgg=0)" in muted.describe_losses() and "g_vgg" not in muted.loss_names


def test_same_seed_same_weights_and_resumed_run_equals_uninterrupted(tmp_path):
    uninterrupted = _trainer(seed=3)
    states = []
    for step in range(4):
        uninterrupted.train_step(*_step_batch(step))
        states.append(_state(uninterrupted))

    first = _trainer(seed=3)
    for step in range(2):
        first.train_step(*_step_batch(step))
    assert all(np.array_equal(a, b) for a, b in zip(states[1], _state(first)))  # same seed, same weights
    path = tf.train.Checkpoint(**first.trackables()).save(str(tmp_path / "ckpt"))
    resumed = _trainer(seed=11)  # other initial weights: everything must come from the checkpoint
    assert not all(np.array_equal(a, b) for a, b in zip(_state(resumed), _state(first)))
    tf.train.Checkpoint(**resumed.trackables()).restore(path).assert_consumed()
    for step in range(2, 4):
        resumed.train_step(*_step_batch(step))

    expected, got = states[3], _state(resumed)
    assert len(expected) == len(got)
    assert all(np.array_equal(a, b) for a, b in zip(expected, got))
    assert int(resumed.generator_optimizer.iterations.numpy()) == 4


def test_frozen_discriminator_generator_loss_reaches_the_condition():
    trainer = _trainer(seed=2)
    trainer.train_step(*_step_batch(0))  # normalised, non-trivial weights
    condition, real = _step_batch(1)
    condition = tf.Variable(condition)
    discriminator_before = [v.numpy().copy() for v in trainer.discriminator.variables]
    generator_before = [v.numpy().copy() for v in trainer.generator.variables]
    with tf.GradientTape() as tape:
        losses = trainer.generator_losses(condition, real, training=False)
    gradient = tape.gradient(losses["g_total"], condition).numpy()
    assert np.all(np.isfinite(gradient)) and np.abs(gradient).max() > 0
    assert np.isclose(float(losses["g_total"]), float(losses["g_hinge"] + losses["g_feat"]), rtol=1e-6)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(discriminator_before, trainer.discriminator.variables))
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(generator_before, trainer.generator.variables))
    # The check can fail: a discriminator in training mode renormalises (rewrites) its kernels.
    trainer.discriminator_losses(condition, real, training=True)
    assert not all(np.array_equal(a, v.numpy()) for a, v in zip(discriminator_before, trainer.discriminator.variables))


def _overfit(size: int, steps: int, **settings) -> tuple[float, float, float]:
    condition, real, coarse = _labelled_slice(size)
    gan_settings = GANSettings(**{**TINY, **settings})
    generator, discriminator = build_gan_models(gan_settings, size)
    trainer = GANTrainer(generator, discriminator, gan_settings)
    start = _psnr(generator(condition, training=False).numpy(), real)
    for _ in range(steps):
        trainer.train_step(condition, real)
    return start, _psnr(generator(condition, training=False).numpy(), real), _psnr(coarse, real)


def test_small_gan_overfits_one_labelled_slice():
    start, end, coarse = _overfit(32, 100, ngf=8, num_upsamplings=3, spade_hidden=32, ndf=8, n_layers_d=3)
    assert end - start >= 6.0, (start, end)
    assert end > coarse, (end, coarse)  # sharper than the coarse input it is conditioned on


@pytest.mark.slow
def test_gan_overfits_one_labelled_slice_at_64():
    start, end, coarse = _overfit(64, 300, ngf=16, num_upsamplings=4, spade_hidden=64, ndf=16, n_layers_d=4)
    assert end - start >= 6.0, (start, end)
    assert end > coarse + 3.0, (end, coarse)
