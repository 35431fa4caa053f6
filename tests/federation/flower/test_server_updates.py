"""The server's check of a round's replies: a non-finite update is left out of the average, a wrongly shaped
one or an error reply is rejected -- each with a log line naming the site -- and the model moves by the mean of
the usable updates only."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf
from flwr.app import Error, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fedsim_tf.federation import roles
from fedsim_tf.federation.flower import protocol
from fedsim_tf.federation.flower.server_app import collect_updates

NODES = {11: "A", 12: "B", 13: "C", 14: "D", 15: "E"}


@pytest.fixture(autouse=True)
def task_identity() -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1


def _reply(node: int, arrays: list[np.ndarray] | None, finite: int = 1) -> Message:
    request = Message(RecordDict(), dst_node_id=node, message_type=protocol.ROUND, group_id="0")
    if arrays is None:
        return Message(Error(code=0, reason="ClientApp raised an exception"), reply_to=request)
    return Message(RecordDict({protocol.UPDATE: protocol.arrays_record(arrays),
                               protocol.STATUS: MetricRecord({"finite": finite, "examples": 2})}), reply_to=request)


def test_nan_wrong_shape_and_failed_sites_are_left_out_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    variables = [tf.Variable(tf.zeros([4, 3])), tf.Variable(tf.zeros([3]))]
    good_a = [np.full((4, 3), 1.0, np.float32), np.full(3, -2.0, np.float32)]
    nan_b = [np.full((4, 3), np.nan, np.float32), np.ones(3, np.float32)]
    wrong_c = [np.ones((3, 4), np.float32), np.ones(3, np.float32)]
    good_d = [np.full((4, 3), 3.0, np.float32), np.full(3, 4.0, np.float32)]
    replies = [_reply(14, good_d), _reply(12, nan_b), _reply(11, good_a), _reply(13, wrong_c), _reply(15, None),
               _reply(99, good_a)]
    with caplog.at_level(logging.WARNING):
        usable = collect_updates(replies, NODES, ["A", "B", "C", "D", "E"], variables, 4, 7)
    assert usable.names == ["A", "B", "D"] and usable.finite == [True, False, True]
    text = caplog.text
    assert "update of site B is not finite" in text
    assert "update of site C rejected" in text and "[3, 4]" in text
    assert "site E failed" in text and "unknown node 99" in text
    result = roles.aggregate(usable.updates, usable.finite)
    assert int(result.count) == 2 and result.used.numpy().tolist() == [True, False, True]
    optimizer = keras.optimizers.SGD(0.5)
    roles.apply_server_update(optimizer, variables, result.gradients)
    # mean of A and D: 2 and 1; SGD at 0.5 from zero: -1 and -0.5; B's NaN reached nothing
    np.testing.assert_array_equal(variables[0].numpy(), np.full((4, 3), -1.0, np.float32))
    np.testing.assert_array_equal(variables[1].numpy(), np.full(3, -0.5, np.float32))


def test_a_site_that_reports_non_finite_is_dropped_even_with_finite_values() -> None:
    variables = [tf.Variable(tf.zeros([2]))]
    usable = collect_updates([_reply(11, [np.ones(2, np.float32)], finite=0)], NODES, ["A"], variables, 4, 0)
    assert usable.finite == [False]
    assert int(roles.aggregate(usable.updates, usable.finite).count) == 0
