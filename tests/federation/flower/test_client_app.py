"""The hospital's ClientApp called in-process on a tiny site (no network): a round's reply is the site's own
GLO gradient of G_S/G_M at the broadcast weights (against an eager gradient of fresh generators), holds nothing
but the update, the finite flag and the batch size, is noted in the outbox, and the site's codes stay on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fedsim_tf.federation.flower import client_app, protocol
from fedsim_tf.federation.flower.settings import federation_config
from fedsim_tf.models.generative_model import GenerativeModel, load_shape_model
from fedsim_tf.models.generators import build_generators
from fedsim_tf.physics.ct_simulator import simulator_for
from fedsim_tf.stages import federated
from fedsim_tf.training.glo import glo_losses, initial_codes
from tests.federation.flower import deployment


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("client")
    sites = deployment.write_sites(folder / "data")
    config = federation_config(str(deployment.TINY), [*(f"--data_dir={sites[n]}" for n in deployment.SITES),
                                                      f"--work_dir={folder / 'record'}"])
    prepared = federated.prepare(config)
    record = json.loads(Path(prepared.run.model_path).read_text())
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    context = Context(run_id=1, node_id=7, node_config={"flagfile": str(deployment.TINY), "data-dir": str(sites["B"]),
                                                        "work-dir": str(folder / "siteB")},
                      state=RecordDict(), run_config={})
    return {"folder": folder, "model": GenerativeModel.from_json(record["model"]), "model_text":
            json.dumps(record["model"]), "context": context, "targets": federated.site_data(prepared)[1].targets}


def _request(content: RecordDict, message_type: str) -> Message:
    return Message(content, dst_node_id=7, message_type=message_type, group_id="0")


def test_describe_sends_only_the_counts(site: dict) -> None:
    reply = client_app.app(_request(RecordDict(), protocol.DESCRIBE), site["context"])
    assert not reply.has_error()
    assert list(reply.content.keys()) == [protocol.COUNTS]
    assert dict(reply.content[protocol.COUNTS]) == {"labelled": 2, "unlabelled": 1}


def test_a_round_sends_the_sites_eager_glo_gradient_and_nothing_else(site: dict) -> None:
    model = site["model"]
    shape_generator, material_generator = build_generators(model, 1)
    variables = shape_generator.trainable_variables + material_generator.trainable_variables
    rng = np.random.default_rng(5)
    for variable in variables:  # broadcast weights other than the initial ones
        variable.assign(variable.numpy() + rng.normal(0, 0.01, variable.shape).astype(np.float32))
    weights = [v.numpy() for v in variables]
    # B is site 1 of 3 sites of 2 labelled volumes each: its codes are rows 2-3 of the 6 pooled initial codes
    plan = ConfigRecord({"index": 1, "code_offset": 2, "code_total": 6, "labelled_batch": 2, "unlabelled_batch": 1,
                         "model": site["model_text"], "dp_clip": 0.0, "dp_noise": 0.0, "round": 0,
                         "supervised": True})
    reply = client_app.app(_request(RecordDict({protocol.WEIGHTS: protocol.arrays_record(weights),
                                                protocol.PLAN: plan}), protocol.ROUND), site["context"])
    assert not reply.has_error(), reply.error
    assert sorted(reply.content.keys()) == [protocol.STATUS, protocol.UPDATE]
    assert dict(reply.content[protocol.STATUS]) == {"finite": 1, "examples": 2}
    update = protocol.record_arrays(reply.content[protocol.UPDATE])

    # the independent reference: the GLO loss of both labelled volumes (batch 2 of 2: all of them, in the order
    # the site's batch draws them -- the loss is a mean over the batch, so the order does not matter)
    codes = tf.constant(initial_codes(1, 6, model.latent_dim)[2:4])
    targets = site["targets"]
    simulator = simulator_for(model, load_shape_model(model.ssm))
    with tf.GradientTape() as tape:
        generated = simulator(shape_generator(codes), material_generator(codes))
        _, total = glo_losses(generated, tf.constant(targets.masks), tf.constant(targets.coarse), None, 0.0)
    expected = tape.gradient(total, variables)
    assert [u.shape for u in update] == [tuple(v.shape) for v in variables]
    assert sum(float(np.linalg.norm(g)) for g in expected) > 0
    for k, (got, want) in enumerate(zip(update, expected)):
        np.testing.assert_allclose(got, want.numpy(), rtol=2e-4, atol=1e-7, err_msg=f"variable {k}")

    site_folder = site["folder"] / "siteB" / "flower" / "B"
    lines = [json.loads(line) for line in (site_folder / "outbox.jsonl").read_text().splitlines()]
    assert lines[-1]["type"] == "train" and sorted(lines[-1]["records"]) == ["status", "update"]
    assert (site_folder / "state" / "round-000000").is_dir()  # the codes stayed on the site
