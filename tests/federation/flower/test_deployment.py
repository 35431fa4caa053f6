"""A real Flower deployment on loopback (127.0.0.1, TLS, SuperNode authentication): the server command and
three site commands run the whole tiny schedule of ``--stage=federated`` (2 pre-training rounds, the sites'
GANs, 2 semi-supervised rounds), and the shared ``G_S``/``G_M`` end where the in-process stage ends on the same
sites and flagfile. Every message a site sent is audited, and a hospital whose key is not listed is refused.
Several minutes on 2 cores (every site step is a fresh process that loads TensorFlow).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedsim_tf.federation.flower import launch
from fedsim_tf.federation.flower.credentials import generate
from tests.federation.flower import deployment

pytestmark = pytest.mark.slow

ALLOWED = {
    "query.describe": {"counts": ("MetricRecord", {"labelled", "unlabelled"})},
    "train": {"update": ("ArrayRecord", None), "status": ("MetricRecord", {"finite", "examples"})},
    "train.gan": {"status": ("MetricRecord", {"done"})},
    "query.code_sums": {"counts": ("MetricRecord", {"codes"}), "sums": ("ArrayRecord", {"sum"})},
    "query.code_scatter": {"sums": ("ArrayRecord", {"scatter"}), "status": ("MetricRecord", {"fourth"})},
}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("flower")
    sites = deployment.write_sites(folder / "data")
    run = deployment.reference(sites, folder / "reference")
    credentials = generate(folder / "credentials", [*deployment.SITES, "X"])
    port = launch.free_port()
    with launch.Processes() as processes:
        env = deployment.environment()
        server = processes.start(deployment.server_command(folder / "server", credentials, port,
                                                           deployment.model_path(run)),
                                 env, str(folder / "server.log"))
        launch.wait_for_port("127.0.0.1", port, 120, server)
        site_processes = {name: processes.start(deployment.site_command(name, sites[name], folder / f"site{name}",
                                                                        credentials, port), env,
                                                str(folder / f"site{name}.log"))
                          for name in deployment.SITES}
        intruder = processes.start(deployment.site_command("X", sites["A"], folder / "siteX", credentials, port,
                                                           extra=["--flower_join_tries=3"]),
                                   env, str(folder / "siteX.log"))
        code = deployment.wait(server, 1500)
        intruder_code = intruder.poll()
        alive = {name: child.poll() is None for name, child in site_processes.items()}
    logs = {"server": (folder / "server.log").read_text(errors="replace"),
            "siteX": (folder / "siteX.log").read_text(errors="replace"),
            "siteX_node": (folder / "siteX" / "logs" / "supernode.log").read_text(errors="replace")}
    return {"code": code, "intruder_code": intruder_code, "alive": alive, "folder": folder, "reference": run,
            "logs": logs, "initial": deployment.initial_weights(run)}


def test_the_deployment_completes(deployed: dict) -> None:
    assert deployed["code"] == 0, deployed["logs"]["server"][-4000:]
    assert all(deployed["alive"].values())


def test_shared_weights_match_the_in_process_stage(deployed: dict) -> None:
    """Same data, seed and flagfile: G_S/G_M after the whole schedule agree with the in-process stage to float32
    rounding (1e-5 relative), and both moved far from their initial weights (so the rounds did something)."""
    expected = deployment.generator_weights(deployed["reference"] / "checkpoints")
    got = deployment.generator_weights(deployed["folder"] / "server" / "flower-server" / "checkpoints")
    initial = deployed["initial"]
    assert [g.shape for g in got] == [e.shape for e in expected] == [i.shape for i in initial]
    assert len(expected) == 14  # G_S: 3 dense layers, G_M: 1 dense + 3 convolutions
    for k, (value, reference, start) in enumerate(zip(got, expected, initial)):
        moved = float(np.max(np.abs(reference - start)))
        assert moved > 1e-4, f"variable {k} did not move"
        np.testing.assert_allclose(value, reference, rtol=1e-5, atol=1e-7, err_msg=f"variable {k}")
    ours = np.load(deployed["folder"] / "server" / "flower-server" / "latent_gaussian.npz")
    theirs = np.load(deployed["reference"] / "latent_gaussian.npz")
    np.testing.assert_allclose(ours["mean"], theirs["mean"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours["cov"], theirs["cov"], rtol=1e-6, atol=1e-9)


def test_every_message_a_site_sent_holds_only_the_update_flags_and_counts(deployed: dict) -> None:
    shapes = [list(v.shape) for v in deployment.generator_weights(deployed["reference"] / "checkpoints")]
    for name in deployment.SITES:
        (site_folder,) = (deployed["folder"] / f"site{name}" / "flower").iterdir()
        lines = [json.loads(line) for line in (site_folder / "outbox.jsonl").read_text().splitlines()]
        kinds = [entry["type"] for entry in lines]
        assert kinds.count("train") == 4 and kinds.count("train.gan") == 1
        for entry in lines:
            allowed = ALLOWED[entry["type"]]
            assert set(entry["records"]) == set(allowed), entry
            for record, (kind, keys) in allowed.items():
                assert entry["records"][record]["kind"] == kind
                if keys is not None:
                    assert set(entry["records"][record]["entries"]) == keys
            if entry["type"] == "train":
                update = entry["records"]["update"]["entries"]
                assert all(a["dtype"] == "float32" for a in update.values())
                assert sorted(a["shape"] for a in update.values()) == sorted(shapes)
            if entry["type"] == "query.code_sums":
                assert entry["records"]["sums"]["entries"]["sum"]["shape"] == [4]


def test_an_unlisted_hospital_key_is_refused(deployed: dict) -> None:
    assert deployed["intruder_code"] == 2
    assert "does not admit this key" in deployed["logs"]["siteX"]
    assert deployed["logs"]["siteX_node"].count("Failed to activate SuperNode") == 3
