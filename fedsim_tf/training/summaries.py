"""TensorBoard logging under ``<work_dir>/logs/<stage>``: scalars and middle-slice images, tagged per site."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf


def _tag(name: str, site: str | None) -> str:
    return f"{site}/{name}" if site else name


def middle_slice_image(volume: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """The middle axial slice of a volume as a ``[1, Y, X, 1]`` image in [0, 1].

    Args:
        volume: ``[Z, Y, X]`` array (labels or intensities).
        value_range: (low, high) mapped to 0 and 1; values outside are clipped.
    """
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"middle_slice_image needs a [Z, Y, X] volume, got shape {volume.shape}")
    low, high = value_range
    image = np.clip((volume[volume.shape[0] // 2] - low) / (high - low), 0.0, 1.0)
    return image[None, :, :, None]


class Summaries:
    """A TensorBoard writer for one stage.

    Args:
        log_dir: folder of the event files (created if missing).
    """

    def __init__(self, log_dir: str) -> None:
        os.makedirs(log_dir, exist_ok=True)
        self.log_dir = log_dir
        self._writer = tf.summary.create_file_writer(log_dir)

    def scalars(self, step: int, values: dict[str, float], site: str | None = None) -> None:
        """Write ``values`` as scalars tagged ``<site>/<name>`` (or ``<name>`` without a site)."""
        with self._writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(_tag(name, site), float(value))

    def images(self, step: int, images: dict[str, np.ndarray], site: str | None = None) -> None:
        """Write ``[1, H, W, 1]`` images in [0, 1] (see :func:`middle_slice_image`) tagged per site."""
        with self._writer.as_default(step=step):
            for name, image in images.items():
                tf.summary.image(_tag(name, site), image, max_outputs=1)

    def flush(self) -> None:
        self._writer.flush()
