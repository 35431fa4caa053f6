"""Start-up errors of the in-process engine, on a one-replica strategy in pytest's own process."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from fedsim_tf.federation import roles
from fedsim_tf.federation.devices import configure_site_devices
from fedsim_tf.federation.strategy import FederatedEngine, site_strategy
from tests.federation import toy


def _engine() -> tuple[FederatedEngine, keras.Model, keras.Model]:
    strategy = site_strategy(["/cpu:0"])
    with strategy.scope():
        encoder, decoder = toy.build_shared()
        server = keras.optimizers.SGD(0.1)
    engine = FederatedEngine(strategy, encoder.trainable_variables + decoder.trainable_variables, server)
    return engine, encoder, decoder


def test_engine_rejects_other_strategies_and_state_made_outside_the_scope() -> None:
    engine, _, _ = _engine()
    shared = engine.shared_variables
    with pytest.raises(ValueError, match=r"runs on tf.distribute.MirroredStrategy, got OneDeviceStrategy"):
        FederatedEngine(tf.distribute.OneDeviceStrategy("/cpu:0"), shared, keras.optimizers.SGD(0.1))
    outside_encoder, _ = toy.build_shared()
    with pytest.raises(ValueError, match=r"shared variables \[.*\] were not created in strategy.scope\(\)"):
        FederatedEngine(engine.strategy, outside_encoder.trainable_variables, keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match=r"server optimiser 'adam' was created outside strategy.scope\(\)"):
        FederatedEngine(engine.strategy, shared, keras.optimizers.Adam(0.1, name="adam"))
    with pytest.raises(ValueError, match=r"reduction must be one of \('mean', 'sum'\), got 'max'"):
        FederatedEngine(engine.strategy, shared, engine.server_optimizer, reduction="max")


def test_rounds_reject_private_state_that_is_shared_mirrored_or_unbuilt() -> None:
    engine, encoder, decoder = _engine()
    with engine.strategy.scope():
        mirrored = toy.build_site("M", encoder, decoder)
    with pytest.raises(ValueError, match=r"site 'M': private variable M_codes.* is mirrored: create site state"):
        engine.compile_round([mirrored.site])
    with engine.site_device(0):
        site = toy.build_site("A", encoder, decoder)
    with pytest.raises(ValueError, match=r"2 site\(s\) for 1 replica\(s\)"):
        engine.compile_round([site.site, site.site])
    fit = site.site.phases[0]
    takes_shared = roles.PrivateUpdate("fit", encoder.trainable_variables[:1], fit.updates[0].optimizer)
    sharing = roles.Site("A", [roles.Phase(fit.losses, [takes_shared, fit.updates[1]], "fit"), site.site.phases[1]])
    with pytest.raises(ValueError, match=r"site 'A': private variable .* is a shared variable"):
        engine.compile_round([sharing])
    with engine.site_device(0):
        fresh = toy.build_site("F", encoder, decoder)
    unbuilt = roles.Site("F", [roles.Phase(fresh.site.phases[0].losses, [roles.PrivateUpdate(
        "fit", [fresh.codes], keras.optimizers.RMSprop(0.1, name="late")), fresh.site.phases[0].updates[1]], "fit"),
        fresh.site.phases[1]])
    with pytest.raises(ValueError, match=r"site 'F': optimiser\(s\) \['late'\] not built: build them"):
        engine.compile_round([unbuilt])
    federated_round = engine.compile_round([site.site])
    with engine.strategy.scope(), pytest.raises(RuntimeError, match=r"call a federated round outside strategy.scope"):
        federated_round(engine.site_inputs(toy.dataset_fn(), 0))


def test_site_inputs_need_data() -> None:
    engine, encoder, decoder = _engine()
    with pytest.raises(ValueError, match=r"site 0's dataset is empty from round 4: every site needs data"):
        engine.site_inputs(lambda site, start: toy.dataset_fn()(site, start).take(0), 4)
    with pytest.raises(ValueError, match=r"site 0's dataset is empty from round 0"):  # unknown cardinality: peeked
        engine.site_inputs(lambda site, start: toy.dataset_fn()(site, start).take(3).filter(lambda *b: False), 0)

    def loss(batch: tuple[tf.Tensor, tf.Tensor, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {"mse": tf.reduce_mean(tf.square(decoder(encoder(batch[0])) - batch[2]))}

    federated_round = engine.compile_round([roles.Site("A", [roles.Phase(loss, shared_loss="mse")])])
    iterator = engine.site_inputs(lambda site, start: toy.dataset_fn()(site, start).take(1), 0)
    assert federated_round(iterator, 0).count == 1
    with pytest.raises(RuntimeError, match=r"federated round 1: a site's input ran out; every site's dataset must"):
        federated_round(iterator, 1)


def test_configure_site_devices_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match=r"configure_site_devices needs at least 1 site, got 0"):
        configure_site_devices(0)
    with pytest.raises(ValueError, match=r"kind must be one of \('auto', 'CPU', 'GPU'\), got 'TPU'"):
        configure_site_devices(3, "TPU")
    if not tf.config.list_physical_devices("GPU"):
        with pytest.raises(ValueError, match=r"kind='GPU'\): no GPU is visible to TensorFlow"):
            configure_site_devices(3, "GPU")


def test_round_without_private_state_and_a_round_without_usable_site() -> None:
    """Direct-FL's shape (only shared weights): one replica steps by -lr * its eager gradient; a round whose
    only site is non-finite leaves the shared weights and the server's step counter alone."""
    engine, encoder, decoder = _engine()

    def loss(batch: tuple[tf.Tensor, tf.Tensor, tf.Tensor]) -> dict[str, tf.Tensor]:
        x, _, y = batch
        return {"mse": tf.reduce_mean(tf.square(decoder(encoder(x)) - y))}

    site = roles.Site("A", [roles.Phase(loss, shared_loss="mse")])
    federated_round = engine.compile_round([site])
    iterator = engine.site_inputs(toy.dataset_fn("late_nan"), 0)
    before = [v.numpy() for v in engine.shared_variables]
    with tf.GradientTape() as tape:
        total = loss(toy.batch(0, 0))["mse"]
    expected = [-0.1 * g.numpy() for g in tape.gradient(total, engine.shared_variables)]
    result = federated_round(iterator, 0)
    assert result.count == 1 and result.used == [True] and result.losses[0]["mse"] == pytest.approx(float(total), 1e-6)
    for variable, old, step in zip(engine.shared_variables, before, expected):
        moved = variable.numpy().astype(np.float64) - old
        assert np.linalg.norm(moved - step) <= 1e-5 * np.linalg.norm(step)
    federated_round(iterator, 1)
    after_two = [v.numpy() for v in engine.shared_variables]
    assert int(engine.server_optimizer.iterations.numpy()) == 2
    nan_site = engine.compile_round([roles.Site("A", [roles.Phase(loss, shared_loss="mse")])])
    iterator = engine.site_inputs(lambda s, start: toy.dataset_fn("late_nan")(2, start), 2)  # site 2's NaN round
    result = nan_site(iterator, 2)
    assert result.count == 0 and result.dropped == ["A"] and int(engine.server_optimizer.iterations.numpy()) == 2
    for variable, old in zip(engine.shared_variables, after_two):
        np.testing.assert_array_equal(variable.numpy(), old)
