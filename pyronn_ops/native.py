"""The native backend: pyronn_ops' C++ cone-beam kernels as a TensorFlow custom-op library.

The library (``pyronn_ops/kernels/``, built by ``make native`` or ``bazel build //pyronn_ops:kernels``)
holds four ops, the native twins of the XLA kernels of :mod:`pyronn_ops.projection` and
:mod:`pyronn_ops.backprojection` with the same signature ``(data, setup, *extra)`` and the same
results to float32 rounding: multi-threaded CPU kernels, plus GPU kernels when it was built
against a CUDA build of TensorFlow.

Where the library is looked for: the path in the environment variable ``PYRONN_OPS_NATIVE_LIBRARY``
if set (``off`` disables the native backend), else :data:`DEFAULT_LIBRARY` (where ``make native``
writes it). Loading happens once per path, on first use; a library that is missing or does not
load (e.g. built against another TensorFlow) leaves the native backend unavailable with the
reason recorded, and the operators fall back to XLA (:mod:`pyronn_ops.backends`).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import tensorflow as tf

from pyronn_ops.operator_setup import ConeSetup

LIBRARY_ENV = "PYRONN_OPS_NATIVE_LIBRARY"
DEFAULT_LIBRARY = Path(__file__).resolve().parent / "kernels" / "build" / "pyronn_kernels.so"
OP_NAMES = ("PyronnConeProjection", "PyronnConeProjectionAdjoint", "PyronnConeBackprojection", "PyronnConeBackprojectionAdjoint")


@dataclass(frozen=True)
class NativeLibrary:
    """A loaded op library.

    Attributes:
        module: the Python module ``tf.load_op_library`` returned (one function per op).
        path: the file it was loaded from.
        devices: device types (``"CPU"``, ``"GPU"``) with registered kernels for every op.
    """

    module: ModuleType
    path: str
    devices: frozenset[str]


@dataclass(frozen=True)
class LoadResult:
    """The library, or None with the reason it is not available."""

    library: NativeLibrary | None
    reason: str


def library_path() -> str | None:
    """The library file to load: ``$PYRONN_OPS_NATIVE_LIBRARY`` or :data:`DEFAULT_LIBRARY`; None when
    the variable is ``off``."""
    configured = os.environ.get(LIBRARY_ENV)
    if configured is None:
        return str(DEFAULT_LIBRARY)
    return None if configured.strip().lower() == "off" else configured


@functools.lru_cache(maxsize=None)
def _load(path: str | None) -> LoadResult:
    if path is None:
        return LoadResult(None, f"native kernels disabled by {LIBRARY_ENV}=off")
    if not os.path.isfile(path):
        return LoadResult(None, f"native library {path} not built (run `make native`)")
    try:
        module = tf.load_op_library(path)
    except (tf.errors.OpError, OSError) as error:  # e.g. missing symbols: built against another TensorFlow
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return LoadResult(None, f"native library {path} does not load ({first_line}); rebuild it with `make native`")
    from tensorflow.python.framework import kernels  # registered kernels per op and device

    devices = None
    for name in OP_NAMES:
        try:
            tf.no_gradient(name)  # gradients are attached by pyronn_ops.ops (PYRO-NN pair or exact adjoints)
        except KeyError:  # already declared by a library loaded from another path
            pass
        types = frozenset(kernel.device_type for kernel in kernels.get_registered_kernels_for_op(name).kernel)
        devices = types if devices is None else devices & types
    return LoadResult(NativeLibrary(module, path, frozenset(devices or ())), f"native library {path}")


def load() -> LoadResult:
    """Load (once per path) the configured library; see the module docstring."""
    return _load(library_path())


def _group_geometry(setup: ConeSetup, scalar: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Matrices ``[G, N, 3, 4]``, origin ``[G, 3]``, spacing ``[G, 3]`` and a per-group scalar ``[G]``
    with one common G (the setup's tensors may carry 1 or B groups each)."""
    tensors = [tf.convert_to_tensor(t, tf.float64) for t in (setup.matrices, setup.origin_xyz, setup.spacing_xyz, scalar)]
    static = [t.shape[0] for t in tensors]
    if None not in static:  # the usual case: no op at all when the group counts already agree
        groups = max(static)
        return tuple(t if t.shape[0] == groups else tf.repeat(t, groups, axis=0) for t in tensors)
    groups = tf.reduce_max(tf.stack([tf.shape(t)[0] for t in tensors]))
    return tuple(tf.broadcast_to(t, tf.concat([[groups], tf.shape(t)[1:]], axis=0)) for t in tensors)


def _project(volume: tf.Tensor, setup: ConeSetup) -> tuple[tf.Tensor, tf.Tensor]:
    values, applied = load().library.module.pyronn_cone_projection(
        volume,
        *_group_geometry(setup, setup.step),
        detector_shape=list(setup.sinogram_shape[1:]),
        hardware_interp=setup.hardware_interp,
        end_correction_rule=setup.end_correction_rule,
    )
    return values, applied


def _project_adjoint(sinogram: tf.Tensor, setup: ConeSetup, applied: tf.Tensor) -> tf.Tensor:
    return load().library.module.pyronn_cone_projection_adjoint(
        sinogram,
        *_group_geometry(setup, setup.step),
        applied,
        volume_shape=list(setup.volume_shape),
        hardware_interp=setup.hardware_interp,
    )


def _backproject(sinogram: tf.Tensor, setup: ConeSetup) -> tf.Tensor:
    return load().library.module.pyronn_cone_backprojection(
        sinogram, *_group_geometry(setup, setup.multiplier), volume_shape=list(setup.volume_shape)
    )


def _backproject_adjoint(volume: tf.Tensor, setup: ConeSetup) -> tf.Tensor:
    return load().library.module.pyronn_cone_backprojection_adjoint(
        volume, *_group_geometry(setup, setup.multiplier), detector_shape=list(setup.sinogram_shape[1:])
    )


# kernel kind -> function(data, setup, *extra), the twins of pyronn_ops.ops' XLA kernels
NATIVE_KERNELS = {
    "project": _project,
    "project_adjoint": _project_adjoint,
    "backproject": _backproject,
    "backproject_adjoint": _backproject_adjoint,
}
