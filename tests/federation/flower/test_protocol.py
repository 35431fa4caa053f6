"""A site's reply holds only what the protocol allows: the G_S/G_M update (float32, the variables' shapes), the
finite flag and counts; anything else -- a code, an image, a loss, a GAN weight -- is refused before it leaves."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

from fedsim_tf.federation.flower import protocol

SHAPES = [(4, 3), (3,)]


def _update(shapes=SHAPES, dtype=np.float32) -> ArrayRecord:
    return protocol.arrays_record([np.ones(s, dtype) for s in shapes])


def _round_reply(**extra) -> RecordDict:
    return RecordDict({protocol.UPDATE: _update(), protocol.STATUS: MetricRecord({"finite": 1, "examples": 2}),
                       **extra})


def test_a_round_reply_with_the_update_flag_and_count_passes() -> None:
    protocol.check_reply(protocol.ROUND, _round_reply(), SHAPES, 4)


def test_arrays_keep_their_order_through_a_record() -> None:
    arrays = [np.arange(k + 1, dtype=np.float32) * (k + 1) for k in range(12)]
    back = protocol.record_arrays(protocol.arrays_record(arrays))
    assert [a.tolist() for a in back] == [a.tolist() for a in arrays]


@pytest.mark.parametrize("bad, match", [
    (lambda: _round_reply(codes=ArrayRecord({"codes": Array(np.zeros((2, 4), np.float32))})), "holds records"),
    (lambda: RecordDict({protocol.UPDATE: _update(),
                         protocol.STATUS: MetricRecord({"finite": 1, "examples": 2, "loss": 0.5})}), "holds"),
    (lambda: RecordDict({protocol.UPDATE: _update([(4, 3), (3,), (2,)]),
                         protocol.STATUS: MetricRecord({"finite": 1, "examples": 2})}), "holds"),
    (lambda: RecordDict({protocol.UPDATE: _update([(4, 3), (4,)]),
                         protocol.STATUS: MetricRecord({"finite": 1, "examples": 2})}), r"allowed float32 \[3\]"),
    (lambda: RecordDict({protocol.UPDATE: _update(dtype=np.float64),
                         protocol.STATUS: MetricRecord({"finite": 1, "examples": 2})}), "float64"),
    (lambda: RecordDict({protocol.UPDATE: MetricRecord({"0000": 1.0, "0001": 2.0}),
                         protocol.STATUS: MetricRecord({"finite": 1, "examples": 2})}), "MetricRecord"),
])
def test_anything_else_in_a_round_reply_is_refused(bad, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        protocol.check_reply(protocol.ROUND, bad(), SHAPES, 4)


def test_code_sums_must_have_the_latent_shape() -> None:
    good = RecordDict({protocol.COUNTS: MetricRecord({"codes": 3}),
                       protocol.SUMS: ArrayRecord({"sum": Array(np.zeros(4))})})
    protocol.check_reply(protocol.CODE_SUMS, good, SHAPES, 4)
    codes = RecordDict({protocol.COUNTS: MetricRecord({"codes": 3}),
                        protocol.SUMS: ArrayRecord({"sum": Array(np.zeros((3, 4)))})})
    with pytest.raises(ValueError, match=r"shape \[3, 4\], allowed \[4\]"):
        protocol.check_reply(protocol.CODE_SUMS, codes, SHAPES, 4)


def test_no_reply_to_an_unknown_request() -> None:
    with pytest.raises(ValueError, match="no reply is allowed"):
        protocol.check_reply("query.images", RecordDict(), SHAPES, 4)
