"""A simulated patient on a voxel grid, as the two basis maps the scanner projects.

Each voxel holds a water-equivalent density (unitless, water = 1) and an iodine-equivalent
concentration (mg I/mL) of :mod:`fedsim_tf.physics.polychromatic`, plus the index of the
dominant :class:`~fedsim_tf.physics.materials.Material` (used only to decide what a later
painting step may overwrite). Painting works on boolean masks, optionally restricted to a
sub-box of the grid (``region``, a tuple of three slices) so that small structures cost little.
Smooth random fields (:func:`smooth_noise`) give textures and mixing patterns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fedsim_tf.grid import Grid
from fedsim_tf.physics.materials import Material
from fedsim_tf.physics.polychromatic import basis_coefficients, basis_luts

Region = tuple[slice, slice, slice]
WHOLE: Region = (slice(None), slice(None), slice(None))


@dataclass
class BasisVolume:
    """Water/iodine basis maps of a patient on ``grid`` (mutable: painted in place).

    Attributes:
        grid: the voxel grid.
        material: ``(Z, Y, X)`` uint8 dominant material index.
        water: ``(Z, Y, X)`` float32 water-equivalent density.
        iodine: ``(Z, Y, X)`` float32 iodine-equivalent concentration, mg I/mL.
    """

    grid: Grid
    material: np.ndarray
    water: np.ndarray
    iodine: np.ndarray

    @classmethod
    def from_materials(cls, grid: Grid, material: np.ndarray, blood_iodine_mg_ml: float) -> "BasisVolume":
        """Basis maps of a material-index volume; enhanced blood gets ``blood_iodine_mg_ml``.

        Args:
            grid: the grid of ``material``.
            material: ``(Z, Y, X)`` uint8 :class:`Material` indices.
            blood_iodine_mg_ml: iodine of :attr:`Material.ENHANCED_BLOOD` voxels (mg/mL).
        """
        material = np.asarray(material, dtype=np.uint8)
        if material.shape != grid.shape:
            raise ValueError(f"material shape {material.shape} does not match grid shape {grid.shape}")
        water_lut, iodine_lut = basis_luts()
        iodine_lut = iodine_lut.copy()
        iodine_lut[Material.ENHANCED_BLOOD] += blood_iodine_mg_ml
        return cls(grid, material, water_lut[material], iodine_lut[material])

    def fill(
        self,
        mask: np.ndarray,
        material: Material,
        density: np.ndarray | float = 1.0,
        iodine_mg_ml: np.ndarray | float = 0.0,
        region: Region = WHOLE,
    ) -> None:
        """Set the voxels of ``mask`` to ``material`` scaled by ``density`` plus ``iodine_mg_ml``.

        Args:
            mask: bool, the shape of ``region`` of the grid.
            material: the material.
            density: scalar or array of the shape of ``mask``: multiplies the material's basis values.
            iodine_mg_ml: scalar or array of the shape of ``mask``: added contrast (mg I/mL).
            region: sub-box of the grid ``mask`` refers to.
        """
        water, iodine = basis_coefficients(Material(material))
        density = np.broadcast_to(np.asarray(density, dtype=np.float32), mask.shape)[mask]
        added = np.broadcast_to(np.asarray(iodine_mg_ml, dtype=np.float32), mask.shape)[mask]
        self.material[region][mask] = material
        self.water[region][mask] = water * density
        self.iodine[region][mask] = iodine * density + added

    def blend(self, mask: np.ndarray, material: Material, fraction: np.ndarray | float, region: Region = WHOLE) -> None:
        """Replace the volume fraction ``fraction`` (scalar or array of the shape of ``mask``) of
        the voxels of ``mask`` by ``material`` (mixtures such as cancellous bone, partial volume);
        the material index changes where the fraction is at least 0.5."""
        water, iodine = basis_coefficients(Material(material))
        share = np.broadcast_to(np.asarray(fraction, dtype=np.float32), mask.shape)[mask]
        for values, own in ((self.water, water), (self.iodine, iodine)):
            sub = values[region]
            sub[mask] = (1.0 - share) * sub[mask] + share * own
        sub = self.material[region]
        sub[mask] = np.where(share >= 0.5, np.uint8(material), sub[mask])

    def copy(self) -> "BasisVolume":
        """An independent copy."""
        return BasisVolume(self.grid, self.material.copy(), self.water.copy(), self.iodine.copy())


def smooth_noise(shape: tuple[int, ...], sigma_voxels: np.ndarray | float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with Gaussian correlation.

    Args:
        shape: array shape.
        sigma_voxels: correlation length per axis in voxels (scalar or per axis).
        rng: random source.

    Returns:
        float32 array of ``shape``.
    """
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma_voxels, mode="wrap")
    std = float(field.std())
    return field / std if std > 0 else field


def segment_distance(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance of points to a segment and the position of their foot point along it.

    Args:
        points: ``(..., 3)`` world mm.
        start, end: ``(3,)`` world mm.

    Returns:
        ``(distance mm, t in [0, 1])``, both of shape ``points.shape[:-1]``.
    """
    axis = end - start
    t = np.clip(((points - start) @ axis) / max(float(axis @ axis), 1e-12), 0.0, 1.0)
    return np.linalg.norm(points - start - t[..., None] * axis, axis=-1), t


def capsule(
    grid: Grid, start: np.ndarray, end: np.ndarray, r_start: float, r_end: float
) -> tuple[Region, np.ndarray] | None:
    """Voxels of ``grid`` inside a tapered capsule (radius ``r_start`` at ``start`` to ``r_end``
    at ``end``, world mm).

    Returns:
        ``(region, mask)`` with ``mask`` the bool voxels of the sub-box ``region``, or ``None``
        when the capsule misses the grid.
    """
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    radius = max(r_start, r_end)
    lo = np.minimum(start, end) - radius
    hi = np.maximum(start, end) + radius
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    ijk = grid.world_to_index(corners)
    first = np.maximum(np.floor(ijk.min(axis=0)).astype(int), 0)[::-1]
    last = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, np.array(grid.shape[::-1]))[::-1]
    if np.any(last <= first):
        return None
    region = tuple(slice(int(a), int(b)) for a, b in zip(first, last))
    k, j, i = np.meshgrid(*(np.arange(s.start, s.stop) for s in region), indexing="ij")
    points = grid.index_to_world(np.stack([i, j, k], axis=-1))
    distance, t = segment_distance(points, start, end)
    mask = distance <= r_start + t * (r_end - r_start)
    return (region, mask) if mask.any() else None
