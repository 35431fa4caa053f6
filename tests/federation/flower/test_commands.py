"""The server and site commands check their command line before anything starts (no TensorFlow, no Flower
process): one ``error:`` line naming the flag, exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedsim_tf.federation.flower.credentials import generate
from tests.federation.flower import deployment

ROOT = Path(__file__).resolve().parents[3]


def _run(module: str, args: list[str], no_tensorflow: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(no_tensorflow), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", f"fedsim_tf.federation.flower.{module}", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory):
    return generate(tmp_path_factory.mktemp("creds"), ["A", "B"])


@pytest.mark.parametrize("flags, message", [
    (["--flower_settings=/nonexistent.cfg"], "--flower_settings=/nonexistent.cfg: no such file"),
    (["--flower_sites=A,B,C"], "missing"),
    (["--flower_sites=A,B", "--flower_dp_noise=1", "--flower_dp_clip=0"], "--flower_dp_clip=0.0: must be positive"),
    (["--flower_sites=A,B", "--flower_min_sites=3"], "--flower_min_sites=3: more than the 2 sites"),
])
def test_server_command_refuses_bad_flags(tmp_path: Path, credentials, no_tensorflow: Path, flags: list[str],
                                          message: str) -> None:
    model = tmp_path / "model.json"
    model.write_text("{}")
    base = [f"--flower_settings={deployment.TINY}", f"--flower_model={model}",
            f"--flower_credentials={credentials.folder}", "--flower_sites=A,B", f"--work_dir={tmp_path / 'w'}"]
    result = _run("server_command", [*base, *flags], no_tensorflow)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "w").exists()


def test_site_command_needs_one_existing_data_folder(tmp_path: Path, credentials, no_tensorflow: Path) -> None:
    base = [f"--flower_ca={credentials.ca_certificate}", f"--flower_key={credentials.site_private_key('A')}",
            f"--flower_settings={deployment.TINY}", f"--work_dir={tmp_path / 'w'}"]
    result = _run("site_command", [*base, f"--data_dir={tmp_path / 'missing'}"], no_tensorflow)
    assert result.returncode == 2 and result.stderr.startswith("error: --data_dir"), result.stderr
    result = _run("site_command", [*base[1:], f"--data_dir={tmp_path}"], no_tensorflow)
    assert result.returncode == 2 and "--flower_ca=: no such file" in result.stderr
