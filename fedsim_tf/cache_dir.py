"""Where fedsim_tf caches what it builds (default SSM, phantom hospitals, preprocessed cases)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The project's cache folder: ``$FEDSIM_CACHE_DIR`` if set, else ``~/.cache/fedsim_tf``."""
    return Path(os.environ.get("FEDSIM_CACHE_DIR") or Path.home() / ".cache" / "fedsim_tf")
