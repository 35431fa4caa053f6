"""The CT intensity scale every network sees: a HU window mapped linearly to ``[-1, 1]``.

The data layer normalises real volumes with it (:mod:`fedsim_tf.data.preprocess`), the CT simulator
puts its output on it (:mod:`fedsim_tf.physics.ct_simulator`), and the writers map generated volumes
back to HU with its inverse. The map is plain arithmetic, so the same functions serve NumPy arrays and
TensorFlow tensors.
"""

from __future__ import annotations

from typing import TypeVar

HU_WINDOW: tuple[float, float] = (-200.0, 800.0)
"""``(low, high)`` HU mapped to ``(-1, 1)`` (cardiac CTA: fat and lung below, bone above)."""

ArrayLike = TypeVar("ArrayLike")


def hu_to_unit(hu: ArrayLike, window: tuple[float, float] = HU_WINDOW) -> ArrayLike:
    """HU -> the ``[-1, 1]`` scale, **without** clipping: ``2 (hu - low) / (high - low) - 1``.

    Args:
        hu: HU values (any shape; NumPy array, TF tensor or float).
        window: ``(low, high)`` HU mapped to ``-1`` and ``1``.
    """
    low, high = window
    return (hu - low) * (2.0 / (high - low)) - 1.0


def unit_to_hu(x: ArrayLike, window: tuple[float, float] = HU_WINDOW) -> ArrayLike:
    """Inverse of :func:`hu_to_unit`: ``[-1, 1]`` values -> HU (any shape)."""
    low, high = window
    return (x + 1.0) * ((high - low) / 2.0) + low
