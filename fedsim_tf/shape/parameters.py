"""The shape-parameter vector ``tau_S`` (paper Sec. 2.1, R^21 for 14 modes): layout, ranges and
finite-difference steps. NumPy only, so command lines can be checked before TensorFlow loads.

Layout of the ``P = n_modes + 7`` numbers of one sample, in this order:

* ``[0, n_modes)``: SSM mode weights in units of each mode's standard deviation;
* ``[n_modes, n_modes + 3)``: rotation vector in radians (world RAS+ axes);
* ``[n_modes + 3, n_modes + 6)``: translation in mm along world x, y, z;
* ``n_modes + 6``: log of the isotropic scale.

The pose (:mod:`fedsim_tf.shape.pose`) rotates and scales about the centre of the SSM's mean shape,
a fixed point, so the pose parameters mean the same for every instance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedsim_tf.grid import Grid
from fedsim_tf.shape.pose import NUM_POSE_PARAMS


def _layout(n_modes: int, mode: float, rotation: float, translation: float, log_scale: float) -> np.ndarray:
    """``(n_modes + 7,)`` float64: one value per block of the parameter layout."""
    return np.concatenate(
        [np.full(n_modes, mode), np.full(3, rotation), np.full(3, translation), [log_scale]]
    ).astype(np.float64)


def num_shape_params(n_modes: int) -> int:
    """``P = n_modes + 7``."""
    return int(n_modes) + NUM_POSE_PARAMS


@dataclass(frozen=True)
class ShapeBounds:
    """Ranges of the shape parameters: each lies in ``centre +- half-width``.

    Attributes:
        mode_limit: SSM weights lie in ``+-mode_limit`` standard deviations (paper: 3).
        rotation_rad: each rotation-vector component lies in ``+-rotation_rad`` radians about 0.
        translation_mm: each translation lies in ``translation_centre_mm +- translation_mm``.
        log_scale: the log-scale lies in ``log_scale_centre +- log_scale``.
        translation_centre_mm: ``(x, y, z)`` mm centre of the translation range (0: the SSM mean's
            position in the label grid).
        log_scale_centre: centre of the log-scale range (0: the SSM mean's size).
    """

    mode_limit: float = 3.0
    rotation_rad: float = math.radians(15.0)
    translation_mm: float = 20.0
    log_scale: float = 0.15
    translation_centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    log_scale_centre: float = 0.0

    def __post_init__(self) -> None:
        for name in ("mode_limit", "rotation_rad", "translation_mm", "log_scale"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ShapeBounds.{name} must be positive, got {value}")
        centre = tuple(float(c) for c in self.translation_centre_mm)
        if len(centre) != 3 or not all(math.isfinite(c) for c in centre + (self.log_scale_centre,)):
            raise ValueError(
                f"ShapeBounds centres must be finite, got translation {self.translation_centre_mm}, "
                f"log-scale {self.log_scale_centre}"
            )
        object.__setattr__(self, "translation_centre_mm", centre)
        object.__setattr__(self, "log_scale_centre", float(self.log_scale_centre))

    def half_widths(self, n_modes: int) -> np.ndarray:
        """``(n_modes + 7,)`` float64 half-widths in the parameter layout."""
        return _layout(n_modes, self.mode_limit, self.rotation_rad, self.translation_mm, self.log_scale)

    def centres(self, n_modes: int) -> np.ndarray:
        """``(n_modes + 7,)`` float64 range centres in the parameter layout."""
        centres = _layout(n_modes, 0.0, 0.0, 0.0, self.log_scale_centre)
        centres[n_modes + 3 : n_modes + 6] = self.translation_centre_mm
        return centres


@dataclass(frozen=True)
class FiniteDifferenceSteps:
    """Central finite-difference half-steps ``h_i`` of the shape op, in the parameters' natural units.

    Attributes:
        mode_std: step of every SSM weight, in units of that mode's standard deviation.
        rotation_rad: step of each rotation-vector component, radians.
        translation_mm: step of each translation, mm; ``None`` means one voxel (the mean grid
            spacing).
        log_scale: step of the log-scale.
    """

    mode_std: float = 0.25
    rotation_rad: float = 0.03
    translation_mm: float | None = None
    log_scale: float = 0.02

    def __post_init__(self) -> None:
        for name in ("mode_std", "rotation_rad", "translation_mm", "log_scale"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value > 0):
                raise ValueError(f"FiniteDifferenceSteps.{name} must be a positive number, got {value}")

    def vector(self, n_modes: int, grid: Grid) -> np.ndarray:
        """``(n_modes + 7,)`` float64 steps in the parameter layout (translation: one voxel of ``grid``
        when ``translation_mm`` is None)."""
        translation = float(np.mean(grid.spacing_zyx)) if self.translation_mm is None else self.translation_mm
        return _layout(n_modes, self.mode_std, self.rotation_rad, translation, self.log_scale)
