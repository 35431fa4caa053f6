"""A hospital's one command: a Flower SuperNode that connects to the server over TLS, authenticates with the
hospital's private key, and runs the site's ``ClientApp`` (:mod:`fedsim_tf.federation.flower.client_app`) on
its own ``--data_dir``; it runs until stopped (Ctrl-C / SIGTERM end the SuperNode and its children).

    python -m fedsim_tf.federation.flower.site_command --flower_server=server.example.org:9092 \\
        --flower_ca=ca.crt --flower_key=A.key --flower_settings=federation.cfg --data_dir=/data/A \\
        --work_dir=runs/A

The site's private state (codes, their optimisers, its GAN) stays in ``<work_dir>/flower/<site>/``; what
it sends is listed in ``outbox.jsonl`` there.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from absl import flags, logging

from fedsim_tf import options  # noqa: F401 -- defines --data_dir and --work_dir
from fedsim_tf.errors import UserInputError
from fedsim_tf.federation.flower import launch, settings  # noqa: F401 -- --flower_settings

flags.DEFINE_string("flower_server", "127.0.0.1:9092", "Flower site: the server's SuperLink address (host:port).")
flags.DEFINE_string("flower_ca", "", "Flower site: the CA certificate that signed the server's certificate.")
flags.DEFINE_string("flower_key", "", "Flower site: the hospital's private authentication key (OpenSSH EC key).")
flags.DEFINE_integer("flower_site_port", 0, "Flower site: local port of the SuperNode's runtime API (0: a free "
                     "one).", lower_bound=0, upper_bound=65535)
flags.DEFINE_integer("flower_max_retries", 0, "Flower site: reconnection attempts before the SuperNode gives up "
                     "(0: no limit).", lower_bound=0)
flags.DEFINE_integer("flower_join_tries", 60, "Flower site: attempts to join while the server has not (yet) "
                     "admitted the site's key.", lower_bound=1)
flags.DEFINE_float("flower_join_wait", 10.0, "Flower site: seconds between two attempts to join.", lower_bound=0.0)

FLAGS = flags.FLAGS
REFUSED = "Failed to activate SuperNode"
"""What ``flower-supernode`` logs before it exits when the SuperLink refuses its key (not registered there)."""


def _refused(log: str, start: int) -> bool:
    """Whether the SuperNode's log, from byte ``start`` on, says the SuperLink refused the key."""
    with open(log, "rb") as handle:
        handle.seek(start)
        return REFUSED.encode() in handle.read()


def node_config(data_dir: str, work_dir: str, settings: str) -> str:
    """The SuperNode's ``--node-config`` (what the site's ClientApp reads)."""
    values = {"flagfile": os.path.abspath(settings), "data-dir": os.path.abspath(data_dir),
              "work-dir": os.path.abspath(work_dir)}
    return " ".join(f'{key}="{value}"' for key, value in values.items())


def main(argv: list[str]) -> int:
    for name in ("flower_ca", "flower_key", "flower_settings"):
        if not os.path.isfile(FLAGS[name].value):
            raise UserInputError(f"--{name}={FLAGS[name].value}: no such file")
    if len(FLAGS.data_dir) != 1 or not os.path.isdir(FLAGS.data_dir[0]):
        raise UserInputError(f"--data_dir: a Flower site needs exactly one existing data folder, got {FLAGS.data_dir}")
    work = os.path.abspath(FLAGS.work_dir)
    home = os.path.join(work, "flower-home")
    port = FLAGS.flower_site_port or launch.free_port()
    argv_node = [launch.tool("flower-supernode"), "--root-certificates", os.path.abspath(FLAGS.flower_ca),
                 "--superlink", FLAGS.flower_server, "--auth-supernode-private-key", os.path.abspath(FLAGS.flower_key),
                 "--node-config", node_config(FLAGS.data_dir[0], work, FLAGS.flower_settings),
                 "--port", str(port)]
    if FLAGS.flower_max_retries:
        argv_node += ["--max-retries", str(FLAGS.flower_max_retries)]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log = os.path.join(work, "logs", "supernode.log")
    for attempt in range(1, FLAGS.flower_join_tries + 1):
        start = os.path.getsize(log) if os.path.isfile(log) else 0
        with launch.Processes() as processes:
            node = processes.start(argv_node, launch.environment(home), log)
            logging.info("flower site: SuperNode for %s -> %s (log %s)", FLAGS.data_dir[0], FLAGS.flower_server, log)
            code = node.wait()
        if code == 0 or not _refused(log, start):
            return code
        logging.warning("flower site: the server did not admit this site's key (attempt %d of %d)", attempt,
                        FLAGS.flower_join_tries)
        time.sleep(FLAGS.flower_join_wait)
    raise UserInputError(f"--flower_key={FLAGS.flower_key}: the server at {FLAGS.flower_server} does not admit this "
                         f"key (not registered there) after {FLAGS.flower_join_tries} attempts")


if __name__ == "__main__":
    from fedsim_tf.cli import run

    run(main)
