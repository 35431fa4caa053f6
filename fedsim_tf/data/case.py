"""One preprocessed volume, the unit the training stages consume."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsim_tf.grid import Grid


@dataclass(frozen=True)
class Case:
    """A preprocessed case on a heart-centred, axis-aligned RAS grid.

    Attributes:
        case_id: e.g. ``ct_train_1001``.
        image: ``(N, N, N)`` float32 ``[z, y, x]``, HU window mapped to ``[-1, 1]``.
        label: ``(N, N, N)`` uint8 ``[z, y, x]`` structure indices ``0..7``, or ``None`` (unlabelled).
        heart_mask: ``(N, N, N)`` uint8 ``[z, y, x]`` ``label > 0``, or ``None`` (unlabelled).
        coarse: ``(c, c, c)`` float32 ``[z, y, x]`` block mean (area downsampling) of ``image``.
        grid: grid of ``image``/``label`` (world RAS+ mm); the coarse grid is
            :func:`fedsim_tf.data.preprocess.coarse_grid` of it.
        image_path: source image file.
        label_path: source label file, or ``None``.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    heart_mask: np.ndarray | None
    coarse: np.ndarray
    grid: Grid
    image_path: str
    label_path: str | None

    @property
    def labelled(self) -> bool:
        """True when the case carries a label volume."""
        return self.label is not None
