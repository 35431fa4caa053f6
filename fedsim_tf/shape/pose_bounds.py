"""Ranges of ``G_S``'s pose parameters derived from the training labels, so generated hearts can reach
the data.

Fixed ranges about the shape model's mean cannot: the default SSM's mean heart is about 340 mL, while
adult hearts are near 650 mL (log-scale +0.22) and paediatric ones near 100-160 mL (log-scale -0.25 to
-0.41), outside a +-0.15 range. Each training mask is matched to the SSM mean by a similarity pose
without rotation (:func:`fitted_poses`): the isotropic scale that gives the mask's volume and the
translation that puts the scaled mean's mask centroid on the mask's centroid. The ranges are then
centred on the mean fitted pose and reach every training heart plus a margin (:func:`data_bounds`).
Rotations keep their fixed range (a mask's volume and centroid say nothing about them).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from fedsim_tf.grid import Grid
from fedsim_tf.shape.parameters import ShapeBounds
from fedsim_tf.shape.voxelize import voxelize

if TYPE_CHECKING:  # the protocol lives beside the TensorFlow shape op
    from fedsim_tf.shape.shape_op import ShapeModel


def _centroid_mm(mask: np.ndarray, grid: Grid) -> np.ndarray:
    """World ``(x, y, z)`` mm of the centroid of a ``[Z, Y, X]`` mask."""
    return grid.index_to_world(np.argwhere(mask).mean(axis=0)[::-1])


def fitted_poses(masks: np.ndarray, grid: Grid, ssm: ShapeModel) -> tuple[np.ndarray, np.ndarray]:
    """The rotation-free similarity pose of the SSM mean that matches each mask's volume and centroid.

    Args:
        masks: ``[N, Z, Y, X]`` binary heart masks on ``grid`` (the generated label maps' grid).
        grid: that grid (world RAS+ mm).
        ssm: the shape model; its mean heart is posed about its vertex centroid (the pose centre).

    Returns:
        ``(translations [N, 3] mm (x, y, z), log_scales [N])``: a point ``x`` of the mean maps to
        ``c + t + exp(s) (x - c)`` with ``c`` the pose centre.

    Raises:
        ValueError: an empty mask, or a mean heart outside ``grid``.
    """
    masks = np.asarray(masks) > 0
    mean_mask = voxelize(ssm.mean, grid) > 0
    if not mean_mask.any():
        raise ValueError("the SSM mean heart does not intersect the label grid")
    if not all(mask.any() for mask in masks):
        raise ValueError("fitted_poses needs non-empty masks")
    centre = np.asarray(ssm.mean.centre(), dtype=np.float64)
    mean_centroid = _centroid_mm(mean_mask, grid)
    log_scales = np.log(masks.reshape(len(masks), -1).sum(axis=1) / mean_mask.sum()) / 3.0
    centroids = np.stack([_centroid_mm(mask, grid) for mask in masks])
    translations = centroids - centre - np.exp(log_scales)[:, None] * (mean_centroid - centre)
    return translations, log_scales


def data_bounds(masks: np.ndarray, grid: Grid, ssm: ShapeModel, margins: ShapeBounds) -> ShapeBounds:
    """Ranges centred on the mean fitted pose that contain every training heart plus a margin.

    Args:
        masks, grid, ssm: as :func:`fitted_poses`.
        margins: its ``translation_mm`` and ``log_scale`` are added beyond the fitted extremes; its
            ``mode_limit`` and ``rotation_rad`` are kept as they are.

    Returns:
        The bounds: translation centre = mean fitted translation (per axis), half-width = the largest
        deviation from it (over axes and masks) + ``margins.translation_mm``; the same for the
        log-scale with ``margins.log_scale``.
    """
    translations, log_scales = fitted_poses(masks, grid, ssm)
    translation_centre = translations.mean(axis=0)
    log_scale_centre = float(log_scales.mean())
    return dataclasses.replace(
        margins,
        translation_mm=float(np.abs(translations - translation_centre).max()) + margins.translation_mm,
        log_scale=float(np.abs(log_scales - log_scale_centre).max()) + margins.log_scale,
        translation_centre_mm=tuple(float(t) for t in translation_centre),
        log_scale_centre=log_scale_centre,
    )
