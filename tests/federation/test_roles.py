"""The site and server roles without tf.distribute (the path another engine, e.g. Flower, takes)."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from fedsim_tf.federation import roles
from tests.federation import toy

PRIVATE = ("codes", "head/0", "head/1", "critic/0", "critic/1")


def _relative(value: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(value, np.float64) - expected) / np.linalg.norm(expected))


def _snapshot(shared: list[tf.Variable], site: toy.ToySite) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    return [v.numpy() for v in shared], site.state()


@pytest.mark.parametrize("compiled", [False, True])
def test_site_step_sends_the_shared_gradient_and_steps_private_state(compiled: bool) -> None:
    encoder, decoder = toy.build_shared()
    shared = encoder.trainable_variables + decoder.trainable_variables
    site = toy.build_site("A", encoder, decoder)
    data = toy.batch(0, 3)
    shared_before, private_before = _snapshot(shared, site)
    step = tf.function(lambda batch: roles.site_step(site.site, shared, batch))  # variables by closure, not argument
    report = step(data) if compiled else roles.site_step(site.site, shared, data)
    reference = toy.reference_round(shared_before, private_before, [t.numpy() for t in data])
    assert bool(report.finite)
    assert float(report.losses["fit"]) == pytest.approx(reference["loss"], rel=1e-5)
    for gradient, expected in zip(report.shared_gradients, reference["shared_grad"]):
        assert _relative(gradient.numpy(), expected) <= 1e-5
    private_after = site.state()
    for key in PRIVATE:
        assert _relative(private_after[key], reference["private"][key]) <= 1e-5, key
    for before, variable in zip(shared_before, shared):  # the site does not touch the shared weights
        assert np.array_equal(variable.numpy(), before)


def test_non_finite_phase_stops_the_sites_updates() -> None:
    encoder, decoder = toy.build_shared()
    shared = encoder.trainable_variables + decoder.trainable_variables
    site = toy.build_site("A", encoder, decoder)
    site.critic.layers[-1].kernel.assign([[np.nan]])
    data = toy.batch(0, 3)
    shared_before, private_before = _snapshot(shared, site)
    report = roles.site_step(site.site, shared, data)
    reference = toy.reference_round(shared_before, private_before, [t.numpy() for t in data])
    assert not bool(report.finite) and np.isnan(float(report.losses["critic"]))
    after = site.state()
    for key in ("codes", "head/0", "head/1"):  # phase 1 was finite: applied
        assert _relative(after[key], reference["private"][key]) <= 1e-5, key
    critic_keys = [key for key in after if key.startswith(("critic/", "opt_critic/"))]
    for key in critic_keys:  # phase 2 was not: nothing of the critic moved, not even its step counter
        np.testing.assert_array_equal(after[key], private_before[key], err_msg=key)
    assert int(site.optimizers["critic"].iterations.numpy()) == 0


def test_aggregate_averages_the_finite_sites_only(caplog: pytest.LogCaptureFixture) -> None:
    grads = [[tf.constant([1.0, 2.0]), tf.constant(1.0)],
             [tf.constant([3.0, np.nan]), tf.constant(2.0)],  # non-finite: dropped by the server's own check
             [tf.constant([5.0, 6.0]), tf.constant(3.0)],
             [tf.constant([7.0, 8.0]), tf.constant(4.0)]]  # reports a failed step: dropped
    finite = [True, True, True, False]
    mean = roles.aggregate(grads, finite)
    assert mean.used.numpy().tolist() == [True, False, True, False] and int(mean.count) == 2
    np.testing.assert_allclose(mean.gradients[0].numpy(), [3.0, 4.0], rtol=1e-7)
    np.testing.assert_allclose(mean.gradients[1].numpy(), 2.0, rtol=1e-7)
    total = roles.aggregate(grads, finite, "sum")
    np.testing.assert_allclose(total.gradients[0].numpy(), [6.0, 8.0], rtol=1e-7)
    none = roles.aggregate(grads[1:2], [True])
    assert int(none.count) == 0 and none.gradients[0].numpy().tolist() == [0.0, 0.0]
    with caplog.at_level(logging.WARNING):
        assert roles.log_dropped(7, ["A", "B", "C", "D"], mean.used.numpy()) == ["B", "D"]
    assert "federated round 7: site(s) B, D left out (non-finite loss or gradient); 2 of 4 site(s) used" in caplog.text


def test_server_update_applies_the_aggregate_with_its_optimiser() -> None:
    variables = [tf.Variable([1.0, -2.0]), tf.Variable(0.5)]
    optimizer = keras.optimizers.SGD(0.5)
    roles.apply_server_update(optimizer, variables, [tf.constant([2.0, 4.0]), tf.constant(-1.0)])
    np.testing.assert_array_equal(variables[0].numpy(), [0.0, -4.0])
    assert float(variables[1].numpy()) == 1.0


def test_bad_updates_and_wiring_are_clear_errors() -> None:
    variables = [tf.Variable(tf.zeros([2, 3])), tf.Variable(tf.zeros([3]))]
    with pytest.raises(ValueError, match=r"site 'B' sent 1 gradients for 2 shared variables"):
        roles.validate_update([tf.zeros([2, 3])], variables, "B")
    with pytest.raises(ValueError, match=r"site 'B' sent a float32 \[3, 2\] gradient for .* \(float32 \[2, 3\]\)"):
        roles.validate_update([tf.zeros([3, 2]), tf.zeros([3])], variables, "B")
    with pytest.raises(ValueError, match=r"reduction must be one of \('mean', 'sum'\), got 'median'"):
        roles.aggregate([[tf.zeros([3])]], [True], "median")
    with pytest.raises(ValueError, match=r"one finite flag per site"):
        roles.aggregate([[tf.zeros([3])], [tf.zeros([3])]], [True])

    def loss(_: object) -> dict[str, tf.Tensor]:
        return {"fit": tf.reduce_sum(variables[0])}

    with pytest.raises(ValueError, match=r"at most one phase may send a shared gradient"):
        roles.Site("A", [roles.Phase(loss, shared_loss="fit"), roles.Phase(loss, shared_loss="fit")])
    with pytest.raises(ValueError, match=r"site 'A' has no phase"):
        roles.Site("A", [])
    with pytest.raises(ValueError, match=r"phase losses \['fit'\] lack \['total'\]"):
        roles.phase_gradients(roles.Phase(loss, shared_loss="total"), variables[:1], None)
    with pytest.raises(ValueError, match=r"loss 'fit' gives no gradient to \[.*\]: pass only variables"):
        roles.phase_gradients(roles.Phase(loss, shared_loss="fit"), variables, None)
