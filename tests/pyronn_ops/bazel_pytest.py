"""Entry point of the Bazel test target: pytest on the given files, with the op library Bazel built.

``bazel test //...`` runs this with the virtualenv's Python (the WORKSPACE's toolchain) in the
runfiles tree, ``PYRONN_OPS_NATIVE_LIBRARY`` pointing at ``//pyronn_ops:kernels``. The native
library must load here (a skipped parity test would pass for nothing).
"""

from __future__ import annotations

import sys

import pytest

from pyronn_ops import native

if __name__ == "__main__":
    loaded = native.load()
    if loaded.library is None:
        sys.exit(f"bazel_pytest: {loaded.reason}")
    sys.exit(pytest.main(["-q", *sys.argv[1:]]))
