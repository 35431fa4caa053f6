"""Faults of a real Flower deployment on loopback (TLS, authenticated sites, differential privacy on):

1. the server stops after round 2 (``--flower_stop_after``) and, started again, resumes from its checkpoint;
2. site C's process is killed before the restart: round 2 proceeds without it (``--flower_min_sites=2``),
   logged as left out; the server stops after round 3;
3. C is started again and the server a third time: C rejoins and sends its update for round 3 from the
   broadcast weights and its own state of round 1, then takes part in the GAN phase and the final Gaussian;
4. the privacy budget of the sites' noisy updates is reported.

Several minutes on 2 cores (three server starts; every site step loads TensorFlow in a fresh process).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fedsim_tf.federation.flower import launch
from fedsim_tf.federation.flower.credentials import generate
from fedsim_tf.federation.flower.settings import federation_config
from fedsim_tf.stages import federated
from tests.federation.flower import deployment
from tests.federation.flower.test_privacy import _classical_rdp_bound, _exact_epsilon

pytestmark = pytest.mark.slow

FAULTS = Path(__file__).with_name("faults.cfg")
NOISE, CLIP, DELTA = 0.5, 10.0, 1e-5


def _outbox_groups(folder: Path) -> list[str]:
    path = next((folder / "flower").iterdir(), None) if (folder / "flower").is_dir() else None
    if path is None or not (path / "outbox.jsonl").is_file():
        return []
    return [json.loads(line)["group"] for line in (path / "outbox.jsonl").read_text().splitlines()
            if json.loads(line)["type"] == "train"]


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("flower_faults")
    sites = deployment.write_sites(folder / "data")
    config = federation_config(str(FAULTS), [*(f"--data_dir={sites[n]}" for n in deployment.SITES),
                                             f"--work_dir={folder / 'record'}"])
    model = Path(federated.prepare(config).run.model_path)
    credentials = generate(folder / "credentials", deployment.SITES)
    port = launch.free_port()
    options = ["--flower_min_sites=2", "--flower_round_timeout=90", "--flower_wait_timeout=60",
               f"--flower_dp_noise={NOISE}", f"--flower_dp_clip={CLIP}", f"--flower_dp_delta={DELTA}"]
    server_work = folder / "server"
    env = deployment.environment()
    observed: dict = {"folder": folder}
    with launch.Processes() as processes:
        def site(name: str):
            return processes.start(deployment.site_command(name, sites[name], folder / f"site{name}", credentials,
                                                           port, flagfile=FAULTS), env, str(folder / f"site{name}.log"))

        first = processes.start(deployment.server_command(server_work, credentials, port, model, flagfile=FAULTS,
                                                          extra=[*options, "--flower_stop_after=2"]),
                                env, str(folder / "server1.log"))
        launch.wait_for_port("127.0.0.1", port, 120, first)
        children = {name: site(name) for name in deployment.SITES}
        observed["first_code"] = deployment.wait(first, 900)
        processes.stop(children.pop("C"))  # C goes away while the server is down
        second = processes.start(deployment.server_command(server_work, credentials, port, model, flagfile=FAULTS,
                                                           extra=[*options, "--flower_stop_after=3"]),
                                 env, str(folder / "server2.log"))
        observed["second_code"] = deployment.wait(second, 900)
        observed["c_groups_before"] = _outbox_groups(folder / "siteC")
        children["C"] = site("C")  # C comes back before the server's third start
        third = processes.start(deployment.server_command(server_work, credentials, port, model, flagfile=FAULTS,
                                                          extra=options), env, str(folder / "server3.log"))
        observed["third_code"] = deployment.wait(third, 1200)
    work = server_work / "flower-server"
    observed["result"] = json.loads((work / "result.json").read_text()) if (work / "result.json").is_file() else {}
    observed["log"] = (work / "logs" / "server_app.log").read_text(errors="replace")
    observed["c_groups"] = _outbox_groups(folder / "siteC")
    observed["weights"] = deployment.generator_weights(work / "checkpoints")
    return observed


def test_the_server_stops_then_resumes_from_its_checkpoint(faults: dict) -> None:
    codes = (faults["first_code"], faults["second_code"], faults["third_code"])
    assert codes == (0, 0, 0), faults["log"][-3000:]
    assert "round 2/4" in faults["log"] and "round 3/4" in faults["log"]  # each start resumed where the last ended
    assert faults["result"]["rounds"] == 4
    assert all(np.isfinite(w).all() for w in faults["weights"])


def test_a_killed_site_is_left_out_and_rejoins(faults: dict) -> None:
    assert faults["c_groups_before"] == ["0", "1"]
    assert "round 2: no reply from site(s) C" in faults["log"]
    assert "flower: round 3 (supervised): 2 site(s) A, B; left out C" in faults["log"]
    assert faults["result"]["left_out_rounds"] == {"A": 0, "B": 0, "C": 1}
    assert faults["c_groups"] == ["0", "1", "3"]  # C sent its update of round 3 after it came back
    assert "flower: round 4 (supervised): 3 site(s) A, B, C" in faults["log"]


def test_the_privacy_budget_is_reported(faults: dict) -> None:
    privacy = faults["result"]["privacy"]
    assert privacy["noise_multiplier"] == NOISE and privacy["clip"] == CLIP and privacy["rounds"] == 4
    assert _exact_epsilon(math.sqrt(4) / NOISE, DELTA) <= privacy["epsilon"] <= _classical_rdp_bound(NOISE, 4, DELTA)
    assert "epsilon" in faults["log"]
