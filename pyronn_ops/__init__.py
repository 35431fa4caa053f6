"""pyronn_ops: PYRO-NN-compatible cone-beam CT operators and Keras layers for TensorFlow 2 (CPU and GPU).

A standalone library (it never imports ``fedsim_tf``). Axis orders: volumes ``[B, Z, Y, X]``,
sinograms ``[B, N, H, W]``; lengths in mm, angles in radians.

``import pyronn_ops`` is cheap: each public name is imported from its module on first use (PEP 562),
so a command-line tool built on the library (``python -m pyronn_ops.examples.fdk``) checks its flags
before TensorFlow loads.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "geometry": ("GeometryCone3D",),
    "trajectory": ("CONVENTIONS", "circular_trajectory_3d"),
    "backends": ("BACKENDS",),
    "ops": ("GRAD_MODES", "cone_backprojection3d", "cone_projection3d"),
    "layers": ("ConeBackprojection3D", "ConeProjection3D"),
    "reference": ("reference_backprojection", "reference_backprojection_adjoint", "reference_projection",
                  "reference_projection_adjoint"),
    "filters": ("FILTERS", "WINDOWS", "filter_kernel", "padded_width", "ram_lak", "ram_lak_3D", "ram_lak_fft", "ramp",
                "window"),
    "weights": ("cosine_weights_3d", "fan_angles", "parker_weight", "parker_weights_3d", "scan_angles"),
    "phantoms": ("Ellipsoid", "cube", "ellipsoid", "shepp_logan_3d", "shepp_logan_ellipsoids", "sphere",
                 "voxelize_ellipsoids"),
    "analytic": ("analytic_ellipsoid_projection",),
    "fdk": ("fdk_reconstruction", "fdk_weights", "filter_sinogram"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'pyronn_ops' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pyronn_ops.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
