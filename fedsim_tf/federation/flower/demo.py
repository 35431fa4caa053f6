"""``make flower-demo``: a local try-out of the Flower federation -- credentials, the generative model's record,
one server and three hospital processes on the phantom hospitals, over TLS on 127.0.0.1 -- that runs the whole
(demo-sized) schedule, stops every process and exits with the server's code.

    python -m fedsim_tf.federation.flower.demo --flower_settings=flags/flower_demo.cfg --work_dir=runs/flower-demo

The record (``model.json``: shape model, pose ranges, grids) is computed here from all three sites' labelled
volumes, which only a try-out on one machine can do; in a deployment the federation agrees on it beforehand.
Logs: ``<work_dir>/server.log`` and ``<work_dir>/site-<name>.log`` (and the Flower logs in their work dirs).
Each try-out starts afresh: it removes what an earlier one wrote there (credentials, server, sites, logs).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

from absl import flags, logging

from fedsim_tf import options  # noqa: F401 -- defines --work_dir
from fedsim_tf.errors import UserInputError
from fedsim_tf.federation.flower import launch, settings  # noqa: F401 -- --flower_settings
from fedsim_tf.federation.flower.credentials import generate

flags.DEFINE_integer("flower_demo_timeout", 3600, "Flower demo: seconds the whole try-out may take.", lower_bound=60)

FLAGS = flags.FLAGS


def _prepare(settings_file: str, work: str) -> tuple[str, dict[str, str]]:
    """The model record and the site folders (phantom hospitals, generated on first use)."""
    from fedsim_tf.federation.flower.settings import federation_config
    from fedsim_tf.stages import federated, inputs

    config = federation_config(settings_file, [f"--work_dir={os.path.join(work, 'record')}"])
    prepared = federated.prepare(config)
    folders = inputs.site_folders(config.common)
    return prepared.run.model_path, {os.path.basename(os.path.normpath(f)): f for f in folders}


def _clear(work: str) -> None:
    """Remove what an earlier try-out wrote in ``work`` (its credentials, server, sites and logs): each try-out
    starts afresh, with new keys."""
    for name in os.listdir(work) if os.path.isdir(work) else []:
        if name in ("credentials", "record", "server", "flwr-home") or name.startswith("site-") or name == "server.log":
            path = os.path.join(work, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)


def main(argv: list[str]) -> int:
    settings_file, work = os.path.abspath(FLAGS.flower_settings), os.path.abspath(FLAGS.work_dir)
    timeout_s = FLAGS.flower_demo_timeout
    if not os.path.isfile(settings_file):
        raise UserInputError(f"--flower_settings={FLAGS.flower_settings}: no such file")
    _clear(work)
    model, sites = _prepare(settings_file, work)  # parses the settings' flags afresh (this command's are read)
    logging.set_verbosity(logging.INFO)
    credentials = generate(os.path.join(work, "credentials"), list(sites))
    port = launch.free_port()
    python = sys.executable
    env = launch.environment(os.path.join(work, "flwr-home"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    deadline = time.monotonic() + timeout_s
    with launch.Processes() as processes:
        server = processes.start(
            [python, "-m", "fedsim_tf.federation.flower.server_command", f"--flower_settings={settings_file}",
             f"--flower_model={model}", f"--flower_credentials={credentials.folder}",
             f"--flower_sites={','.join(sites)}", f"--flower_port={port}", f"--work_dir={os.path.join(work, 'server')}"],
            env, os.path.join(work, "server.log"))
        launch.wait_for_port("127.0.0.1", port, 120, server)
        for name, folder in sites.items():
            processes.start([python, "-m", "fedsim_tf.federation.flower.site_command",
                             f"--flower_server=127.0.0.1:{port}", f"--flower_ca={credentials.ca_certificate}",
                             f"--flower_key={credentials.site_private_key(name)}",
                             f"--flower_settings={settings_file}", f"--data_dir={folder}",
                             f"--work_dir={os.path.join(work, 'site-' + name)}"],
                            env, os.path.join(work, f"site-{name}.log"))
        logging.info("flower demo: server on 127.0.0.1:%d, sites %s; logs in %s", port, ", ".join(sites), work)
        while server.poll() is None:
            if time.monotonic() > deadline:
                raise UserInputError(f"--flower_demo_timeout={timeout_s}: the try-out did not end in time (logs in "
                                     f"{work})")
            time.sleep(2.0)
    results = os.path.join(work, "server", "flower-server")
    summary = Path(results, "result.json").read_text(encoding="utf-8") if server.returncode == 0 else ""
    logging.info("flower demo: server exited with %d; every process stopped; results in %s %s", server.returncode,
                 results, " ".join(summary.split()))
    return server.returncode


if __name__ == "__main__":
    from fedsim_tf.cli import run

    run(main)
