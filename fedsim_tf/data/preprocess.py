"""Preprocessing of one CT volume: canonical frame, resampling, heart-centred crop, HU scaling.

Pipeline of :func:`preprocess_case` (all arrays ``[z, y, x]``):

1. **Reorientation** to the canonical RAS frame (:func:`to_canonical`): voxel axes are permuted
   and flipped (exactly, no interpolation) so that ``i``/``j``/``k`` point closest to world
   +x (Right) / +y (Anterior) / +z (Superior); the affine is updated to match.
2. **Heart centre** in world mm, from the image alone (:func:`blood_pool_centre`: the largest
   connected blob of contrast-filled blood, 150..600 HU, inside the central body region) -- for
   labelled and unlabelled volumes alike. The label is never used to place the crop: a test volume's
   crop must not tell the segmentation network where the heart is, and training and test volumes
   must be cropped by the same rule.
3. **Resampling + crop/pad** in one step (:func:`resample`): the output is the axis-aligned RAS
   grid of ``grid_size``\\ :sup:`3` voxels of ``spacing_mm`` centred on the heart centre
   (:func:`crop_grid`); every output voxel centre is mapped through the affines into the source
   volume (this also absorbs any residual oblique rotation). Images: trilinear, after a Gaussian
   anti-aliasing prefilter with ``sigma = (f - 1) / 2`` source voxels per axis when downsampling by
   ``f > 1``; outside the source field of view they read as air (-1024 HU). Labels: nearest
   neighbour, background outside.
4. **HU window** ``[lo, hi]`` (default :data:`fedsim_tf.intensity.HU_WINDOW`, ``[-200, 800]``) clipped
   and mapped linearly to ``[-1, 1]`` (:func:`normalise_hu`).
5. **Heart mask** ``label > 0`` and the **coarse target**: block mean of the normalised image over
   ``(grid_size / coarse_size)``\\ :sup:`3` blocks (area downsampling, :func:`area_downsample`; its
   grid is :func:`coarse_grid`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation
from scipy import ndimage

from fedsim_tf.data.case import Case
from fedsim_tf.grid import Grid
from fedsim_tf.intensity import HU_WINDOW, hu_to_unit

AIR_HU = -1024.0
BLOOD_HU_RANGE: tuple[float, float] = (150.0, 600.0)
# Central body region searched by the unlabelled heuristic: fraction of the extent kept per
# axis (z, y, x), centred.
CENTRAL_FRACTION_ZYX: tuple[float, float, float] = (0.8, 0.6, 0.6)
# Voxel size (mm) of the sub-sampled volume the heuristic labels connected blobs on.
HEURISTIC_STEP_MM = 4.0


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of :func:`preprocess_case` (all part of the cache key).

    Attributes:
        spacing_mm: isotropic target voxel size in mm.
        grid_size: ``N``, voxels per side of the heart-centred output cube.
        coarse_size: ``c``, voxels per side of the coarse target; must divide ``grid_size``.
        hu_window: ``(lo, hi)`` HU mapped to ``(-1, 1)``; values outside are clipped.
        antialias: Gaussian prefilter before downsampling images.
    """

    spacing_mm: float = 1.25
    grid_size: int = 128
    coarse_size: int = 16
    hu_window: tuple[float, float] = HU_WINDOW
    antialias: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.spacing_mm) and self.spacing_mm > 0):
            raise ValueError(f"spacing_mm must be positive, got {self.spacing_mm}")
        if self.grid_size <= 0 or self.coarse_size <= 0 or self.grid_size % self.coarse_size:
            raise ValueError(f"coarse_size ({self.coarse_size}) must be positive and divide "
                             f"grid_size ({self.grid_size})")
        lo, hi = (float(v) for v in self.hu_window)
        if not lo < hi:
            raise ValueError(f"hu_window must be (lo, hi) with lo < hi, got {self.hu_window}")
        object.__setattr__(self, "hu_window", (lo, hi))
        object.__setattr__(self, "spacing_mm", float(self.spacing_mm))

    def to_json(self) -> dict[str, object]:
        """JSON-ready settings."""
        return {**asdict(self), "hu_window": list(self.hu_window)}


def to_canonical(volume: np.ndarray, grid: Grid) -> tuple[np.ndarray, Grid]:
    """Permute/flip voxel axes so the grid is closest to RAS (exact, no interpolation).

    Args:
        volume: ``(Z, Y, X)`` array on ``grid``.
        grid: its grid; any orientation (LPS, permuted axes, oblique).

    Returns:
        ``(volume, grid)`` with ``i``/``j``/``k`` along world +x/+y/+z (up to residual obliquity).
    """
    ornt = io_orientation(grid.affine)
    xyz = volume.transpose(2, 1, 0)
    reoriented = apply_orientation(xyz, ornt)
    affine = grid.affine @ inv_ornt_aff(ornt, xyz.shape)
    out = np.ascontiguousarray(reoriented.transpose(2, 1, 0))
    return out, Grid(out.shape, affine)


def blood_pool_centre(image_hu: np.ndarray, grid: Grid) -> np.ndarray:
    """Heart-centre heuristic for unlabelled cardiac CTA; world ``(x, y, z)`` mm.

    The volume is sub-sampled to about ``HEURISTIC_STEP_MM`` voxels; voxels in
    ``BLOOD_HU_RANGE`` (contrast-filled blood; cortical bone is brighter, myocardium darker)
    inside the central box ``CENTRAL_FRACTION_ZYX`` of the field of view are split into
    26-connected blobs and the centroid of the largest blob is returned. The chambers and great
    vessels form one large connected blob, which wins over bone marrow or contrast in arm veins.
    Without any such voxel the field-of-view centre is returned.

    Args:
        image_hu: ``(Z, Y, X)`` image in HU.
        grid: its grid.
    """
    steps = [max(1, round(HEURISTIC_STEP_MM / s)) for s in grid.spacing_zyx]
    sub = image_hu[:: steps[0], :: steps[1], :: steps[2]]
    box = np.zeros(sub.shape, dtype=bool)
    box[tuple(slice(int(n * (1 - f) / 2), n - int(n * (1 - f) / 2))
              for n, f in zip(sub.shape, CENTRAL_FRACTION_ZYX))] = True
    blood = box & (sub >= BLOOD_HU_RANGE[0]) & (sub <= BLOOD_HU_RANGE[1])
    blobs, count = ndimage.label(blood, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return grid.index_to_world((np.array(grid.shape[::-1], dtype=np.float64) - 1) / 2)
    largest = int(np.argmax(np.bincount(blobs.ravel())[1:])) + 1
    kji = np.argwhere(blobs == largest).mean(axis=0) * np.asarray(steps)
    return grid.index_to_world(kji[::-1])


def crop_grid(centre_xyz: np.ndarray, config: PreprocessConfig) -> Grid:
    """The axis-aligned RAS output grid: ``grid_size``\\ :sup:`3` voxels of ``spacing_mm``
    centred on world ``centre_xyz`` (mm)."""
    return Grid.centred(config.grid_size, config.grid_size * config.spacing_mm,
                        tuple(float(c) for c in centre_xyz))


def resample(
    volume: np.ndarray,
    grid: Grid,
    target: Grid,
    order: int,
    cval: float,
    antialias: bool = False,
) -> np.ndarray:
    """Sample ``volume`` at the voxel centres of ``target``.

    Args:
        volume: ``(Z, Y, X)`` source array on ``grid``.
        grid: source grid.
        target: output grid (any affine).
        order: 1 trilinear (images), 0 nearest neighbour (labels).
        cval: value outside the source field of view.
        antialias: Gaussian prefilter, ``sigma = (f - 1) / 2`` source voxels per axis where the
            output step spans ``f > 1`` source voxels.

    Returns:
        ``target.shape`` array, float32 for ``order > 0``, the source dtype for ``order == 0``.
    """
    to_source = np.linalg.inv(grid.affine) @ target.affine  # target (i, j, k) -> source (i, j, k)
    matrix = to_source[:3, :3][::-1, ::-1]  # the same map on (k, j, i) = array axes (z, y, x)
    offset = to_source[:3, 3][::-1]
    data = volume.astype(np.float32) if order > 0 else volume
    if antialias and order > 0:
        sigma = np.maximum(0.0, (np.abs(matrix).max(axis=1) - 1.0) / 2.0)
        if np.any(sigma > 0):
            data = ndimage.gaussian_filter(data, sigma, mode="nearest")
    diagonal = np.allclose(matrix, np.diag(np.diag(matrix)))
    return ndimage.affine_transform(
        data, np.diag(matrix) if diagonal else matrix, offset=offset, output_shape=target.shape,
        order=order, mode="constant", cval=cval, prefilter=False,
    )


def normalise_hu(image_hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Clip HU to ``window = (lo, hi)`` and map linearly to ``[-1, 1]`` (float32, any shape;
    :func:`fedsim_tf.intensity.hu_to_unit`)."""
    return hu_to_unit(np.clip(np.asarray(image_hu, dtype=np.float64), *window), window).astype(np.float32)


def area_downsample(volume: np.ndarray, size: int) -> np.ndarray:
    """Block mean of an ``(N, N, N)`` volume down to ``(size, size, size)``; ``size`` divides N."""
    n = volume.shape[0]
    if volume.shape != (n, n, n) or n % size:
        raise ValueError(f"area_downsample needs a cube whose side is a multiple of {size}, "
                         f"got {volume.shape}")
    f = n // size
    return volume.reshape(size, f, size, f, size, f).mean(axis=(1, 3, 5), dtype=np.float64).astype(np.float32)


def coarse_grid(grid: Grid, size: int) -> Grid:
    """Grid of :func:`area_downsample` output: each coarse voxel centre is its block's centre."""
    f = grid.shape[0] // size
    affine = grid.affine.copy()
    affine[:3, 3] = grid.index_to_world(np.full(3, (f - 1) / 2.0))
    affine[:3, :3] = grid.affine[:3, :3] * f
    return Grid((size, size, size), affine)


def preprocess_case(
    image: np.ndarray,
    label: np.ndarray | None,
    grid: Grid,
    config: PreprocessConfig,
    case_id: str = "",
    image_path: str = "",
    label_path: str | None = None,
) -> Case:
    """Run the module pipeline on one volume.

    Args:
        image: ``(Z, Y, X)`` HU image in stored voxel order.
        label: ``(Z, Y, X)`` structure indices ``0..7`` (already remapped, see
            :func:`fedsim_tf.data.labels.remap_labels`) on the same grid, or ``None``.
        grid: grid of ``image`` (and ``label``).
        config: preprocessing settings.
        case_id, image_path, label_path: recorded in the returned :class:`Case`.

    Returns:
        The preprocessed :class:`Case` (``grid_size``\\ :sup:`3` volumes, RAS, heart-centred).
    """
    if image.shape != grid.shape or (label is not None and label.shape != grid.shape):
        raise ValueError(f"{case_id}: image {image.shape} / label "
                         f"{None if label is None else label.shape} do not match grid {grid.shape}")
    image_ras, grid_ras = to_canonical(image, grid)
    label_ras = None if label is None else to_canonical(label, grid)[0]
    target = crop_grid(blood_pool_centre(image_ras, grid_ras), config)
    hu = resample(image_ras, grid_ras, target, order=1, cval=AIR_HU, antialias=config.antialias)
    image_out = normalise_hu(hu, config.hu_window)
    label_out = mask = None
    if label_ras is not None:
        label_out = resample(label_ras, grid_ras, target, order=0, cval=0).astype(np.uint8)
        mask = (label_out > 0).astype(np.uint8)
    return Case(
        case_id=case_id,
        image=image_out,
        label=label_out,
        heart_mask=mask,
        coarse=area_downsample(image_out, config.coarse_size),
        grid=target,
        image_path=str(image_path),
        label_path=None if label_path is None else str(label_path),
    )
