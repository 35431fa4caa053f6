"""The server's one command: a TLS SuperLink that admits only the listed hospitals' keys, and the federation's
run (:mod:`fedsim_tf.federation.flower.server_app`) on it; exits when the run ends (0: completed).

    python -m fedsim_tf.federation.flower.server_command --flower_settings=federation.cfg \\
        --flower_model=model.json --flower_credentials=creds --flower_sites=A,B,C --work_dir=runs/server

``--flower_credentials`` holds ``ca.crt``, ``server.crt``, ``server.key`` and each site's ``<site>.pub``
(:mod:`fedsim_tf.federation.flower.credentials`). The SuperLink keeps its state (registered keys, runs) in
``<work_dir>/flower-server/superlink.db``; the run's checkpoints, plan and results are in
``<work_dir>/flower-server/``. Started again, the server resumes from its latest checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from absl import flags, logging

from fedsim_tf import options  # noqa: F401 -- defines --work_dir
from fedsim_tf.atomic import write_json_atomic
from fedsim_tf.errors import UserInputError
from fedsim_tf.federation.flower import launch, settings  # noqa: F401 -- --flower_settings
from fedsim_tf.federation.flower.credentials import Credentials

flags.DEFINE_string("flower_model", "", "Flower server: the generative model's record (model.json).")
flags.DEFINE_string("flower_credentials", "", "Flower server: folder of ca.crt, server.crt, server.key and the "
                    "sites' <site>.pub keys.")
flags.DEFINE_list("flower_sites", [], "Flower server: the hospitals, in order (names of their public keys).")
flags.DEFINE_string("flower_host", "127.0.0.1", "Flower server: address the SuperLink listens on.")
flags.DEFINE_integer("flower_port", 9092, "Flower server: port of the SuperLink (Fleet, Control and Runtime APIs).",
                     lower_bound=1, upper_bound=65535)
flags.DEFINE_integer("flower_min_sites", 0, "Flower server: usable updates a round needs (0: every site).",
                     lower_bound=0)
flags.DEFINE_float("flower_wait_timeout", 600.0, "Flower server: seconds to wait for the sites to connect.",
                   lower_bound=1.0)
flags.DEFINE_float("flower_round_timeout", 600.0, "Flower server: seconds a round waits for replies.", lower_bound=1.0)
flags.DEFINE_integer("flower_round_tries", 3, "Flower server: tries of a round with too few usable updates.",
                     lower_bound=1)
flags.DEFINE_float("flower_gan_timeout", 3600.0, "Flower server: seconds the sites' GAN pre-training may take.",
                   lower_bound=1.0)
flags.DEFINE_float("flower_dp_clip", 1.0, "Flower: L2 bound of a site's update when --flower_dp_noise > 0.",
                   lower_bound=0.0)
flags.DEFINE_float("flower_dp_noise", 0.0, "Flower: noise multiplier of the sites' Gaussian noise (0: no "
                   "differential privacy).", lower_bound=0.0)
flags.DEFINE_float("flower_dp_delta", 1e-5, "Flower: the delta at which epsilon is reported.", lower_bound=0.0)
flags.DEFINE_integer("flower_stop_after", -1, "Flower server: end after this many rounds (a try-out of resuming; "
                     "-1: run the whole schedule).", lower_bound=-1)

FLAGS = flags.FLAGS


def _check_files() -> Credentials:
    for name in ("flower_settings", "flower_model"):
        if not os.path.isfile(FLAGS[name].value):
            raise UserInputError(f"--{name}={FLAGS[name].value}: no such file")
    if not FLAGS.flower_sites:
        raise UserInputError("--flower_sites: name the hospitals")
    credentials = Credentials(Path(FLAGS.flower_credentials))
    needed = [credentials.ca_certificate, credentials.server_certificate, credentials.server_key,
              *(credentials.site_public_key(site) for site in FLAGS.flower_sites)]
    missing = [str(path) for path in needed if not path.is_file()]
    if missing:
        raise UserInputError(f"--flower_credentials={FLAGS.flower_credentials}: missing {', '.join(missing)} "
                             "(python -m fedsim_tf.federation.flower.credentials)")
    if FLAGS.flower_dp_noise > 0 and FLAGS.flower_dp_clip <= 0:
        raise UserInputError(f"--flower_dp_clip={FLAGS.flower_dp_clip}: must be positive with --flower_dp_noise")
    if FLAGS.flower_dp_noise > 0 and not 0 < FLAGS.flower_dp_delta < 1:
        raise UserInputError(f"--flower_dp_delta={FLAGS.flower_dp_delta}: must be in (0, 1)")
    if FLAGS.flower_min_sites > len(FLAGS.flower_sites):
        raise UserInputError(f"--flower_min_sites={FLAGS.flower_min_sites}: more than the "
                             f"{len(FLAGS.flower_sites)} sites")
    return credentials


def _flwr(argv: Sequence[str], env: dict[str, str], timeout_s: float | None = 120.0) -> str:
    result = subprocess.run([launch.tool("flwr"), *argv], env=env, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        raise RuntimeError(f"flwr {' '.join(argv[:2])} failed ({result.returncode}): "
                           f"{(result.stdout + result.stderr).strip()[-2000:]}")
    return result.stdout


def _json(output: str) -> dict:
    return json.loads(output[output.index("{"):])


def register(sites: Sequence[str], credentials: Credentials, env: dict[str, str], path: str) -> dict[str, int]:
    """Register each site's public key at the SuperLink (once; the node ids are kept in ``path``)."""
    nodes: dict[str, int] = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            nodes = {site: int(node) for site, node in json.load(handle).items()}
    for site in sites:
        if site not in nodes:
            reply = _json(_flwr(["supernode", "register", str(credentials.site_public_key(site)), "--name", site,
                                 "--format", "json"], env))
            nodes[site] = int(reply["node-id"])
            write_json_atomic(path, nodes)
            logging.info("flower server: site %s's key registered (node %d)", site, nodes[site])
    return nodes


def run_config(nodes: dict[str, int], work: str) -> str:
    """The ``flwr run --run-config`` string (TOML values)."""
    values = {
        "flagfile": os.path.abspath(FLAGS.flower_settings), "model-json": os.path.abspath(FLAGS.flower_model),
        "work-dir": os.path.abspath(work), "sites": ",".join(FLAGS.flower_sites),
        "nodes": ",".join(f"{site}={node}" for site, node in nodes.items()),
        "min-sites": FLAGS.flower_min_sites or len(FLAGS.flower_sites), "wait-timeout": FLAGS.flower_wait_timeout,
        "round-timeout": FLAGS.flower_round_timeout, "round-tries": FLAGS.flower_round_tries,
        "gan-timeout": FLAGS.flower_gan_timeout, "dp-clip": FLAGS.flower_dp_clip, "dp-noise": FLAGS.flower_dp_noise,
        "dp-delta": FLAGS.flower_dp_delta, "stop-after": FLAGS.flower_stop_after,
    }
    return " ".join(f"{key}={json.dumps(value)}" for key, value in values.items())


def main(argv: list[str]) -> int:
    credentials = _check_files()
    work = os.path.join(FLAGS.work_dir, "flower-server")
    home = os.path.abspath(os.path.join(work, "flwr-home"))
    address = f"{FLAGS.flower_host}:{FLAGS.flower_port}"
    env = launch.environment(home)
    launch.write_connection(home, address, str(credentials.ca_certificate))
    app_folder = launch.write_app(os.path.join(work, "app"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # ends the SuperLink and the run's processes too
    with launch.Processes() as processes:
        link = processes.start(
            [launch.tool("flower-superlink"), "--ssl-ca-certfile", str(credentials.ca_certificate),
             "--ssl-certfile", str(credentials.server_certificate), "--ssl-keyfile", str(credentials.server_key),
             "--enable-supernode-auth", "--disable-runtime-dependency-installation", "--host", FLAGS.flower_host,
             "--port", str(FLAGS.flower_port), "--database", os.path.abspath(os.path.join(work, "superlink.db"))],
            env, os.path.join(work, "logs", "superlink.log"))
        launch.wait_for_port(FLAGS.flower_host, FLAGS.flower_port, 60.0, link)
        nodes = register(FLAGS.flower_sites, credentials, env, os.path.join(work, "nodes.json"))
        logging.info("flower server: SuperLink on %s (TLS, %d registered keys); starting the run", address, len(nodes))
        started = _json(_flwr(["run", app_folder, "--run-config", run_config(nodes, work), "--format", "json"], env))
        run_id = started["run-id"]
        log_path = os.path.join(work, "logs", f"run-{run_id}.log")
        with open(log_path, "ab") as log:
            subprocess.run([launch.tool("flwr"), "log", run_id, "--stream"], env=env, stdout=log,
                           stderr=subprocess.STDOUT, check=False)
        status = _json(_flwr(["ls", "--run-id", run_id, "--format", "json"], env))["runs"][0]["status"]
        logging.info("flower server: run %s %s (log: %s)", run_id, status, log_path)
        return 0 if status.endswith("completed") else 1


if __name__ == "__main__":
    from fedsim_tf.cli import run

    run(main)
