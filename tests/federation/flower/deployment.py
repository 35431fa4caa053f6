"""A real Flower deployment on loopback for the tests: the server command and one site command per hospital,
each a process group that is always ended (:class:`fedsim_tf.federation.flower.launch.Processes`), and the
in-process ``--stage=federated`` reference on the same sites and flagfile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from fedsim_tf.federation.flower import launch
from fedsim_tf.federation.flower.credentials import Credentials
from tests.stages.sites import write_site

ROOT = Path(__file__).resolve().parents[3]
TINY = Path(__file__).with_name("tiny.cfg")
SITES = ("A", "B", "C")
PYTHON = sys.executable


def write_sites(folder: Path) -> dict[str, Path]:
    """Sites A, B, C of 5 volumes each (2 labelled and 1 unlabelled training volumes in fold 0)."""
    for seed, name in enumerate(SITES, start=1):
        write_site(folder / name, 5, seed=seed)
    return {name: folder / name for name in SITES}


def environment() -> dict[str, str]:
    return launch.environment(os.environ.get("FLWR_HOME", str(Path.home() / ".flwr")))


def reference(sites: dict[str, Path], work: Path, flagfile: Path = TINY) -> Path:
    """Run ``--stage=federated`` in-process on 3 logical CPUs; returns its run folder."""
    argv = [PYTHON, "-m", "fedsim_tf.main", "--stage=federated", f"--flagfile={flagfile}", f"--work_dir={work}",
            "--fed_devices=CPU", *(f"--data_dir={sites[name]}" for name in SITES)]
    result = subprocess.run(argv, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"reference stage failed:\n{result.stderr[-4000:]}")
    (run,) = (work / "federated").iterdir()
    return run


def model_path(run: Path) -> Path:
    return run / "model.json"


def generator_weights(checkpoint_dir: Path) -> list[np.ndarray]:
    """``G_S``'s then ``G_M``'s trainable variables in the latest checkpoint of ``checkpoint_dir`` (saved through
    the server optimiser's variable list, in shared-variable order)."""
    path = tf.train.latest_checkpoint(str(checkpoint_dir))
    assert path is not None, f"no checkpoint in {checkpoint_dir}"
    reader = tf.train.load_checkpoint(path)
    prefix = "server_optimizer/_trainable_variables/"
    names = {int(name[len(prefix):].split("/")[0]): name for name, _ in tf.train.list_variables(path)
             if name.startswith(prefix)}
    return [reader.get_tensor(names[k]) for k in range(len(names))]


def initial_weights(run: Path) -> list[np.ndarray]:
    """``G_S``/``G_M`` as built from the run's record and seed, before any round."""
    from fedsim_tf.models.generative_model import GenerativeModel
    from fedsim_tf.models.generators import build_generators

    record = json.loads(model_path(run).read_text())
    shape_generator, material_generator = build_generators(GenerativeModel.from_json(record["model"]),
                                                           record["trained_on"]["seed"])
    return [v.numpy() for v in shape_generator.trainable_variables + material_generator.trainable_variables]


def server_command(work: Path, credentials: Credentials, port: int, model: Path, sites: Sequence[str] = SITES,
                   flagfile: Path = TINY, extra: Sequence[str] = ()) -> list[str]:
    return [PYTHON, "-m", "fedsim_tf.federation.flower.server_command", f"--flower_settings={flagfile}",
            f"--flower_model={model}", f"--flower_credentials={credentials.folder}", f"--flower_sites={','.join(sites)}",
            f"--flower_port={port}", f"--work_dir={work}", "--flower_wait_timeout=300",
            "--flower_round_timeout=300", "--flower_gan_timeout=300", *extra]


def site_command(site: str, data_dir: Path, work: Path, credentials: Credentials, port: int,
                 flagfile: Path = TINY, extra: Sequence[str] = ()) -> list[str]:
    return [PYTHON, "-m", "fedsim_tf.federation.flower.site_command", f"--flower_server=127.0.0.1:{port}",
            f"--flower_ca={credentials.ca_certificate}", f"--flower_key={credentials.site_private_key(site)}",
            f"--flower_settings={flagfile}", f"--data_dir={data_dir}", f"--work_dir={work}",
            "--flower_join_wait=2", *extra]


def wait(child: subprocess.Popen, timeout_s: float) -> int | None:
    """The child's exit code, or ``None`` if it still runs after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return child.returncode
        time.sleep(0.5)
    return None
