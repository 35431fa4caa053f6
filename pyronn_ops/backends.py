"""Which kernel implementation runs the cone-beam operators (``backend=`` of :mod:`pyronn_ops.ops`).

* ``"auto"`` (default): ``"native"`` when the op library is available (:mod:`pyronn_ops.native`),
  the call is not being compiled by XLA (custom ops cannot run inside ``tf.function(jit_compile=True)``)
  and the library has kernels for the devices in use (a visible GPU needs a CUDA build of the
  library); otherwise ``"xla"``.
* ``"native"``: the C++ (or CUDA) custom ops; an error when they cannot run here.
* ``"xla"``: the cached XLA-compiled TensorFlow kernels (work everywhere, also inside XLA).
* ``"tf"``: the same TensorFlow kernels uncompiled (debugging).

The choice ``"auto"`` makes is logged once per distinct outcome (logger ``pyronn_ops``, level INFO),
e.g. ``pyronn_ops: cone-beam kernels run on the native backend (native library .../pyronn_kernels.so)``.
"""

from __future__ import annotations

import logging

import tensorflow as tf
from tensorflow.python.ops import control_flow_util  # XLA-context query (no public API)

from pyronn_ops import native

BACKENDS = ("auto", "native", "xla", "tf")
DEFAULT_BACKEND = "auto"
LOGGER = logging.getLogger("pyronn_ops")
_ANNOUNCED: set[str] = set()  # the log lines already written (one line per distinct choice)


def inside_xla_compilation() -> bool:
    """True while tracing a function that XLA compiles (``tf.function(jit_compile=True)`` or nested in one)."""
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def _auto_choice() -> tuple[str, str]:
    """(backend, reason) for ``backend="auto"``."""
    if inside_xla_compilation():
        return "xla", "inside tf.function(jit_compile=True), where custom ops cannot run"
    loaded = native.load()
    if loaded.library is None:
        return "xla", loaded.reason
    if tf.config.list_logical_devices("GPU") and "GPU" not in loaded.library.devices:
        return "xla", f"a GPU is visible and {loaded.reason} has CPU kernels only"
    return "native", loaded.reason


def resolve_backend(backend: str) -> str:
    """The backend that runs a call made now with ``backend=`` (``"native"``, ``"xla"`` or ``"tf"``).

    Raises:
        ValueError: an unknown name, or ``"native"`` where the native kernels cannot run (library
            missing or not loadable, or inside an XLA-compiled function), with the reason.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "native":
        if inside_xla_compilation():
            raise ValueError(
                "backend='native' cannot run inside tf.function(jit_compile=True) (custom ops are not XLA ops): "
                "use backend='auto' or 'xla'"
            )
        loaded = native.load()
        if loaded.library is None:
            raise ValueError(f"backend='native' is not available: {loaded.reason}")
        return backend
    if backend != "auto":
        return backend
    choice, reason = _auto_choice()
    line = f"pyronn_ops: cone-beam kernels run on the {choice} backend ({reason})"
    if line not in _ANNOUNCED:
        _ANNOUNCED.add(line)
        LOGGER.info(line)
    return choice
