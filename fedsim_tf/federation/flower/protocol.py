"""What travels between the Flower server and a site: message types, record names, and the one rule for a
site's replies (:func:`check_reply`), which the site applies to every message before it leaves.

Requests (server -> site), each a ``RecordDict``:

=====================  =============================================================================
message type           content
=====================  =============================================================================
``query.describe``     nothing
``train``              ``weights`` (``G_S``/``G_M``), ``plan`` (round, kind, :class:`SitePlan` fields,
                       model record, privacy settings), ``gaussian`` (semi-supervised rounds)
``train.gan``          ``weights`` (after pre-training), ``plan``
``query.code_sums``    ``plan`` (``after_round``, ``with_unlabelled``)
``query.code_scatter`` ``plan``, ``mean`` (pooled code mean)
=====================  =============================================================================

Replies (site -> server); nothing else may leave a site -- no image, label, code or GAN weight:

=====================  =============================================================================
``query.describe``     ``counts``: MetricRecord ``labelled``, ``unlabelled`` (numbers of volumes)
``train``              ``update``: ArrayRecord, one float32 gradient per ``G_S``/``G_M`` variable (its
                       shape); ``status``: MetricRecord ``finite`` (0/1), ``examples`` (batch size)
``train.gan``          ``status``: MetricRecord ``done``
``query.code_sums``    ``counts``: MetricRecord ``codes``; ``sums``: ArrayRecord ``sum`` ``[D]``
``query.code_scatter`` ``sums``: ArrayRecord ``scatter`` ``[D, D]``; ``status``: MetricRecord ``fourth``
=====================  =============================================================================

The two code queries carry sums over a site's codes (:mod:`fedsim_tf.federation.flower.code_moments`),
never a code, and are asked twice per run (the Gaussian of the unlabelled codes' start, the final one).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

DESCRIBE = "query.describe"
ROUND = "train"
GAN = "train.gan"
CODE_SUMS = "query.code_sums"
CODE_SCATTER = "query.code_scatter"

WEIGHTS, PLAN, GAUSSIAN, MEAN = "weights", "plan", "gaussian", "mean"
UPDATE, STATUS, COUNTS, SUMS = "update", "status", "counts", "sums"

ALLOWED_REPLIES: dict[str, dict[str, tuple[type, tuple[str, ...]]]] = {
    DESCRIBE: {COUNTS: (MetricRecord, ("labelled", "unlabelled"))},
    ROUND: {UPDATE: (ArrayRecord, ()), STATUS: (MetricRecord, ("finite", "examples"))},
    GAN: {STATUS: (MetricRecord, ("done",))},
    CODE_SUMS: {COUNTS: (MetricRecord, ("codes",)), SUMS: (ArrayRecord, ("sum",))},
    CODE_SCATTER: {SUMS: (ArrayRecord, ("scatter",)), STATUS: (MetricRecord, ("fourth",))},
}
"""Per request type: the reply's records, their kind and their keys (``update``'s keys: :func:`array_keys`)."""


def array_keys(count: int) -> list[str]:
    """Keys of the ``count`` arrays of a ``weights`` or ``update`` record, in shared-variable order."""
    return [f"{k:04d}" for k in range(count)]


def arrays_record(arrays: Sequence[np.ndarray]) -> ArrayRecord:
    """An ArrayRecord of arrays in order (:func:`array_keys`)."""
    return ArrayRecord({key: Array(np.ascontiguousarray(a)) for key, a in zip(array_keys(len(arrays)), arrays)})


def record_arrays(record: ArrayRecord) -> list[np.ndarray]:
    """The arrays of :func:`arrays_record`, in order.

    Raises:
        ValueError: keys that are not ``0000 .. N-1``.
    """
    keys = list(record.keys())
    if keys != array_keys(len(keys)):
        raise ValueError(f"arrays named {keys[:5]}... instead of {array_keys(len(keys))[:5]}...")
    return [record[key].numpy() for key in keys]


def check_reply(message_type: str, content: RecordDict, shared_shapes: Sequence[tuple[int, ...]],
                latent_dim: int) -> None:
    """Refuse a site's reply that holds anything but what the protocol allows (module docstring).

    Args:
        message_type: the request's type.
        content: the reply.
        shared_shapes: the ``G_S``/``G_M`` variables' shapes (an ``update`` must match them, float32).
        latent_dim: ``D`` (the code sums' shapes).

    Raises:
        ValueError: naming the first record, key, kind or shape that is not allowed.
    """
    allowed = ALLOWED_REPLIES.get(message_type)
    if allowed is None:
        raise ValueError(f"no reply is allowed to a {message_type!r} request")
    if set(content.keys()) != set(allowed):
        raise ValueError(f"reply to {message_type} holds records {sorted(content.keys())}, allowed {sorted(allowed)}")
    for name, (kind, keys) in allowed.items():
        record = content[name]
        if not isinstance(record, kind):
            raise ValueError(f"reply to {message_type}: record {name!r} is a {type(record).__name__}, "
                             f"allowed {kind.__name__}")
        expected = array_keys(len(shared_shapes)) if name == UPDATE else list(keys)
        if sorted(record.keys()) != sorted(expected):
            raise ValueError(f"reply to {message_type}: record {name!r} holds {sorted(record.keys())}, allowed "
                             f"{sorted(expected)}")
    if message_type == ROUND:
        for key, shape in zip(array_keys(len(shared_shapes)), shared_shapes):
            array = content[UPDATE][key]
            if tuple(array.shape) != tuple(shape) or array.dtype != "float32":
                raise ValueError(f"reply to {message_type}: update {key} is {array.dtype} {list(array.shape)}, "
                                 f"allowed float32 {list(shape)}")
    shapes = {CODE_SUMS: ("sum", (latent_dim,)), CODE_SCATTER: ("scatter", (latent_dim, latent_dim))}
    if message_type in shapes:
        key, shape = shapes[message_type]
        if tuple(content[SUMS][key].shape) != shape:
            raise ValueError(f"reply to {message_type}: {key} has shape {list(content[SUMS][key].shape)}, "
                             f"allowed {list(shape)}")

