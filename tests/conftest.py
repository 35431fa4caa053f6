"""Shared pytest set-up: quiet TensorFlow logging, and a stand-in TensorFlow that fails to import (to prove a
command line is checked before TensorFlow loads)."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def no_tensorflow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose ``tensorflow`` and ``keras`` packages fail to import: put first on PYTHONPATH of a
    subprocess, it proves that a command line was checked without loading TensorFlow."""
    folder = tmp_path_factory.mktemp("no_tensorflow")
    for name in ("tensorflow", "keras"):
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(f"raise ImportError('{name} must not load to check a command line')\n")
    return folder
