"""Image-quality yardsticks of the phantom hospitals: edge width, water cupping, shape-model fit.

* :func:`edge_phantom` + :func:`edge_width`: a cylinder of blood and myocardium split by a tilted
  plane through the isocentre, scanned by a site's chain; the 10-90 % width of the edge-spread
  function, binned by the signed distance to the known plane (the analytic truth).
* :func:`water_cylinder`: a centred water cylinder (beam-hardening cupping).
* :func:`ssm_fit_errors`: the mean surface distance (mm) between phantom hearts and their best
  reconstruction by a shape model (similarity alignment and least-squares mode weights).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fedsim_tf.data.phantom_object import BasisVolume
from fedsim_tf.grid import Grid
from fedsim_tf.physics.materials import Material
from fedsim_tf.shape.mesh import HeartMesh
from fedsim_tf.shape.ssm import StatisticalShapeModel
from fedsim_tf.shape.surface_distance import mean_surface_distance

EDGE_NORMAL_XYZ: tuple[float, float, float] = (0.985, 0.1736, 0.05)
"""Normal of the test edge: 10 degrees from x in-plane, slightly tilted along z (normalised)."""
ESF_BIN_VOXELS = 0.1
ESF_PLATEAU_VOXELS = 4.0


def _cylinder(grid: Grid, radius_mm: float) -> np.ndarray:
    """``(Z, Y, X)`` bool: voxel centres within ``radius_mm`` of the z axis."""
    xyz = grid.voxel_centres()
    return np.hypot(xyz[..., 0], xyz[..., 1]) <= radius_mm


def edge_phantom(grid: Grid, blood_iodine_mg_ml: float) -> tuple[BasisVolume, np.ndarray]:
    """Blood/myocardium cylinder (radius 40 % of the smaller in-plane field of view) with the
    interface plane ``normal . x = 0``; blood on the negative side. Voxels cut by the plane hold
    the volume fractions of a linear ramp across the voxel's extent along the normal.

    Returns:
        The object (air outside the cylinder) and the unit normal ``(3,)`` (x, y, z).
    """
    normal = np.asarray(EDGE_NORMAL_XYZ) / np.linalg.norm(EDGE_NORMAL_XYZ)
    radius = 0.4 * min(grid.shape[1] * grid.spacing_zyx[1], grid.shape[2] * grid.spacing_zyx[2])
    inside = _cylinder(grid, radius)
    volume = BasisVolume.from_materials(grid, np.full(grid.shape, Material.AIR, dtype=np.uint8), 0.0)
    extent = float(np.abs(normal) @ grid.spacing_zyx[::-1])
    myocardium = np.clip(0.5 + (grid.voxel_centres() @ normal) / extent, 0.0, 1.0)
    volume.fill(inside, Material.ENHANCED_BLOOD, iodine_mg_ml=blood_iodine_mg_ml)
    volume.blend(inside, Material.MYOCARDIUM, myocardium)
    return volume, normal


def edge_width(image: np.ndarray, grid: Grid, normal: np.ndarray, mask: np.ndarray) -> float:
    """10-90 % width (mm) of an edge through the origin with unit ``normal``.

    The edge-spread function is the mean of ``image`` over the voxels of ``mask`` in bins of
    :data:`ESF_BIN_VOXELS` voxels of signed distance to the plane; its levels are the means
    beyond :data:`ESF_PLATEAU_VOXELS` voxels on either side; the crossings are interpolated
    linearly between bins.

    Args:
        image: ``(Z, Y, X)`` values.
        grid: its grid.
        normal: ``(3,)`` unit normal (x, y, z); values rise or fall along it.
        mask: ``(Z, Y, X)`` bool voxels to use.
    """
    voxel = float(np.abs(normal) @ grid.spacing_zyx[::-1])
    distance = (grid.voxel_centres() @ normal)[mask] / voxel
    values = image[mask].astype(np.float64)
    low = values[distance < -ESF_PLATEAU_VOXELS].mean()
    high = values[distance > ESF_PLATEAU_VOXELS].mean()
    edges = np.arange(-ESF_PLATEAU_VOXELS, ESF_PLATEAU_VOXELS + 1e-9, ESF_BIN_VOXELS)
    index = np.digitize(distance, edges)
    centres = (edges[:-1] + edges[1:]) / 2
    esf = np.array([values[index == k].mean() for k in range(1, len(edges))])
    normalised = (esf - low) / (high - low)
    rising = normalised if normalised[-1] > normalised[0] else normalised[::-1]
    positions = centres if normalised[-1] > normalised[0] else -centres[::-1]

    def crossing(level: float) -> float:
        k = int(np.argmax(rising >= level))
        if k == 0:
            return float(positions[0])
        t = (level - rising[k - 1]) / (rising[k] - rising[k - 1])
        return float(positions[k - 1] + t * (positions[k] - positions[k - 1]))

    return abs(crossing(0.9) - crossing(0.1)) * voxel


def water_cylinder(grid: Grid, radius_mm: float) -> BasisVolume:
    """A water cylinder of ``radius_mm`` along z through the isocentre, air around it."""
    volume = BasisVolume.from_materials(grid, np.full(grid.shape, Material.AIR, dtype=np.uint8), 0.0)
    volume.fill(_cylinder(grid, radius_mm), Material.WATER)
    return volume


def ssm_fit_errors(ssm: StatisticalShapeModel, hearts: Iterable[HeartMesh]) -> np.ndarray:
    """Mean symmetric surface distance (mm) of each heart to its best shape-model reconstruction."""
    return np.array([mean_surface_distance(ssm.reconstruction(h), h) for h in hearts])
