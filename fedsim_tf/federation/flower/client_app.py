"""The hospital's Flower ``ClientApp`` (``app``): the site role of :mod:`fedsim_tf.federation.roles` behind
the message types of :mod:`fedsim_tf.federation.flower.protocol`.

The SuperNode of a hospital (:mod:`fedsim_tf.federation.flower.site_command`) runs this app in a fresh
process per message, with its ``node_config``: ``flagfile`` (the federation's settings, the same flags as
``--stage=federated``), ``data-dir`` (the hospital's one data folder) and ``work-dir`` (its private state,
:mod:`fedsim_tf.federation.flower.site`). Every reply is checked against the protocol before it leaves
(:func:`~fedsim_tf.federation.flower.protocol.check_reply`) and summarised -- record names, keys, shapes,
dtypes, no values -- in ``<work-dir>/flower/<site>/outbox.jsonl``, so what a site sent can be audited.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedsim_tf.federation.flower import protocol

app = ClientApp()


def site_config(node_config: Mapping[str, Any]) -> Any:
    """The site's :class:`~fedsim_tf.stages.federated.FederatedConfig` from its node config.

    Raises:
        UserInputError: a missing node-config key, or bad flags.
    """
    from fedsim_tf.errors import UserInputError
    from fedsim_tf.federation.flower.settings import federation_config

    missing = [key for key in ("flagfile", "data-dir", "work-dir") if not node_config.get(key)]
    if missing:
        raise UserInputError(f"the site's --node-config lacks {', '.join(missing)}")
    return federation_config(str(node_config["flagfile"]), [f"--data_dir={node_config['data-dir']}",
                                                            f"--work_dir={node_config['work-dir']}"])


def _runtime(message: Message, context: Context) -> Any:
    import tensorflow as tf

    from fedsim_tf.federation.flower.site import SitePlan, SiteRuntime, load_site_data
    from fedsim_tf.models.generative_model import GenerativeModel

    tf.config.experimental.enable_op_determinism()
    config = site_config(context.node_config)
    plan = message.content[protocol.PLAN]
    model = GenerativeModel.from_json(json.loads(str(plan["model"])))
    site_plan = SitePlan(int(plan["index"]), int(plan["code_offset"]), int(plan["code_total"]),
                         int(plan["labelled_batch"]), int(plan["unlabelled_batch"]))
    return SiteRuntime(config, model, load_site_data(config), site_plan)


def _summary(content: RecordDict) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name, record in content.items():
        if isinstance(record, ArrayRecord):
            entries = {key: {"shape": list(record[key].shape), "dtype": record[key].dtype} for key in record.keys()}
        else:
            entries = {key: type(value).__name__ for key, value in record.items()}
        summary[name] = {"kind": type(record).__name__, "entries": entries}
    return summary


def _reply(message: Message, content: RecordDict, folder: str, shared_shapes: list[tuple[int, ...]],
           latent_dim: int) -> Message:
    """Check the reply against the protocol, note it in the outbox, and make the message."""
    message_type = message.metadata.message_type
    protocol.check_reply(message_type, content, shared_shapes, latent_dim)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "outbox.jsonl"), "a", encoding="utf-8") as outbox:
        outbox.write(json.dumps({"type": message_type, "group": message.metadata.group_id,
                                 "records": _summary(content)}) + "\n")
    return Message(content, reply_to=message)


def _shapes(runtime: Any) -> list[tuple[int, ...]]:
    return [tuple(v.shape) for v in runtime.shared_variables()]


@app.query("describe")
def describe(message: Message, context: Context) -> Message:
    """The site's numbers of labelled and unlabelled training volumes."""
    from fedsim_tf.federation.flower.site import load_site_data

    config = site_config(context.node_config)
    data = load_site_data(config)
    content = RecordDict({protocol.COUNTS: MetricRecord({"labelled": len(data.targets),
                                                         "unlabelled": len(data.unlabelled_ids)})})
    folder = os.path.join(config.common.work_dir, "flower", data.name)
    return _reply(message, content, folder, [], config.model.latent_dim)


@app.train()
def train(message: Message, context: Context) -> Message:
    """One round: the site's step on the broadcast weights; sends the ``G_S``/``G_M`` update."""
    from fedsim_tf.federation.flower.privacy import PrivacySettings
    from fedsim_tf.training.latent_gaussian import LatentGaussian

    runtime = _runtime(message, context)
    plan = message.content[protocol.PLAN]
    runtime.set_shared(protocol.record_arrays(message.content[protocol.WEIGHTS]))
    gaussian = None
    if protocol.GAUSSIAN in message.content:
        arrays = message.content[protocol.GAUSSIAN]
        gaussian = LatentGaussian(arrays["mean"].numpy(), arrays["cov"].numpy(), 0.0)
    privacy = PrivacySettings(float(plan["dp_clip"]), float(plan["dp_noise"])) if float(plan["dp_noise"]) > 0 else None
    update, finite, examples = runtime.round_step(int(plan["round"]), bool(plan["supervised"]), gaussian, privacy)
    content = RecordDict({protocol.UPDATE: protocol.arrays_record(update),
                          protocol.STATUS: MetricRecord({"finite": int(finite), "examples": examples})})
    return _reply(message, content, runtime.folder, _shapes(runtime), runtime.model.latent_dim)


@app.train("gan")
def gan(message: Message, context: Context) -> Message:
    """The site's GAN pre-training on ``G_M`` at the end of pre-training (private; nothing is sent but done)."""
    runtime = _runtime(message, context)
    runtime.set_shared(protocol.record_arrays(message.content[protocol.WEIGHTS]))
    runtime.pretrain_gan()
    content = RecordDict({protocol.STATUS: MetricRecord({"done": 1})})
    return _reply(message, content, runtime.folder, _shapes(runtime), runtime.model.latent_dim)


@app.query("code_sums")
def code_sums(message: Message, context: Context) -> Message:
    """Pass 1 of the codes' Gaussian: the count and the sum of the site's codes after a round."""
    from fedsim_tf.federation.flower.code_moments import first_moments

    runtime = _runtime(message, context)
    plan = message.content[protocol.PLAN]
    count, total = first_moments(runtime.codes_after(int(plan["after_round"]), bool(plan["with_unlabelled"])))
    content = RecordDict({protocol.COUNTS: MetricRecord({"codes": count}),
                          protocol.SUMS: ArrayRecord({"sum": Array(total)})})
    return _reply(message, content, runtime.folder, _shapes(runtime), runtime.model.latent_dim)


@app.query("code_scatter")
def code_scatter(message: Message, context: Context) -> Message:
    """Pass 2 of the codes' Gaussian: the scatter and fourth-power sum about the pooled mean."""
    from fedsim_tf.federation.flower.code_moments import second_moments

    runtime = _runtime(message, context)
    plan = message.content[protocol.PLAN]
    codes = runtime.codes_after(int(plan["after_round"]), bool(plan["with_unlabelled"]))
    scatter, fourth = second_moments(codes, message.content[protocol.MEAN]["mean"].numpy())
    content = RecordDict({protocol.SUMS: ArrayRecord({"scatter": Array(np.asarray(scatter))}),
                          protocol.STATUS: MetricRecord({"fourth": fourth})})
    return _reply(message, content, runtime.folder, _shapes(runtime), runtime.model.latent_dim)
