"""Analytic chest around a voxelised heart: the material-index volume of one phantom patient.

World frame RAS+ in mm (+x patient right, +y anterior, +z superior; see :mod:`fedsim_tf.grid`).
The heart's vertex centroid sits at the world origin (the scanner's isocentre); the body centre
lies right-posterior of it, so the heart ends up left-anterior in the chest, apex
left-anterior-inferior (the heart template's orientation).

Structures (adult sizes in mm, multiplied by the patient's ``scale``), painted in this order,
later ones overwriting earlier ones:

1. body: elliptic cross-section, semi-axes 160 x 110 (x, y), widening 5 % per 100 mm downwards,
   filled with adipose (the 12 mm subcutaneous fat layer);
2. chest wall: 12 mm of muscle (soft tissue) inside the fat, then an 8 mm rib layer: ribs are
   10 mm bone bands every 30 mm along z, sloping down anteriorly, with intercostal muscle between
   them, costal cartilage (soft tissue) within 25 degrees of the anterior midline and a 30 mm wide
   bony sternum on it;
3. thoracic cavity inside the chest wall: inflated lung;
4. liver and diaphragm: soft tissue below a dome (right side higher) just under the heart;
5. mediastinum: adipose in a 60 mm wide band from the sternum to the spine and in an ellipsoid
   enclosing the heart with a 10 mm margin (mediastinal fat);
6. back muscles: soft tissue within 55 mm of the midline behind the vertebral bodies;
7. spine: vertebral bodies (radius 22, cortical bone, 22 mm tall, with 6 mm soft-tissue discs),
   the spinal canal (radius 9, soft tissue) inside a 7 mm bony arch;
8. descending aorta: enhanced blood, radius 12, left-anterior of the vertebral bodies;
9. the heart: label indices 1..7 painted with the Fix-Mat atlas
   (:data:`fedsim_tf.physics.materials.STRUCTURE_MATERIALS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsim_tf.grid import Grid
from fedsim_tf.physics.materials import STRUCTURE_MATERIALS, Material

BODY_OFFSET_MM: tuple[float, float] = (20.0, -35.0)
"""Adult body centre (x, y) relative to the heart centre, mm: the heart sits 20 mm left of and
35 mm anterior to the body axis."""
BODY_SEMI_AXES_MM: tuple[float, float] = (160.0, 110.0)
FAT_MM = 12.0
MUSCLE_MM = 12.0
RIB_LAYER_MM = 8.0
RIB_PERIOD_MM = 30.0
RIB_WIDTH_MM = 10.0
RIB_SLOPE = 0.35
"""Rib descent (mm in z per mm towards anterior)."""
CARTILAGE_HALF_ANGLE = np.deg2rad(25.0)
STERNUM_HALF_WIDTH_MM = 15.0
MEDIASTINUM_HALF_WIDTH_MM = 30.0
HEART_FAT_MARGIN_MM = 10.0
SPINE_DEPTH = 0.45
"""Vertebral-body centre behind the body centre, as a fraction of the body's y semi-axis."""
VERTEBRA_RADIUS_MM = 22.0
VERTEBRA_PERIOD_MM = 28.0
DISC_MM = 6.0
CANAL_RADIUS_MM = 9.0
ARCH_MM = 7.0
BACK_MUSCLE_HALF_WIDTH_MM = 55.0
AORTA_RADIUS_MM = 12.0
AORTA_OFFSET_MM: tuple[float, float] = (-26.0, 20.0)
"""Descending aorta centre relative to the vertebral-body centre (left, anterior)."""
DIAPHRAGM_RADIUS_MM = 250.0
DIAPHRAGM_BELOW_HEART_MM = 6.0


@dataclass(frozen=True)
class TorsoParameters:
    """The chest of one patient.

    Attributes:
        scale: linear size relative to the adult chest (1 = adult).
        body_centre: ``(x, y)`` mm, world position of the body axis.
        heart_box: ``(2, 3)`` mm, min and max world ``(x, y, z)`` of the heart's vertices.
        rib_phase: ``[0, 1)``, position of the rib pattern along z, in periods.
    """

    scale: float
    body_centre: tuple[float, float]
    heart_box: np.ndarray
    rib_phase: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"TorsoParameters.scale must be > 0, got {self.scale}")
        box = np.asarray(self.heart_box, dtype=np.float64)
        if box.shape != (2, 3) or np.any(box[1] < box[0]):
            raise ValueError(f"TorsoParameters.heart_box must be (2, 3) min/max, got {box.tolist()}")
        object.__setattr__(self, "heart_box", box)

    def body_bounds(self, z_range: tuple[float, float]) -> np.ndarray:
        """``(2, 3)`` mm, min and max world ``(x, y, z)`` of the body between ``z_range``."""
        a, b = self.semi_axes(np.array(z_range, dtype=np.float64))
        a, b = float(a.max()), float(b.max())
        cx, cy = self.body_centre
        return np.array([[cx - a, cy - b, z_range[0]], [cx + a, cy + b, z_range[1]]])

    def semi_axes(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Body semi-axes ``(a, b)`` in mm along x and y at heights ``z`` (any shape, mm)."""
        widen = 1.0 - 0.05 * (z - self.heart_box.mean(axis=0)[2]) / (100.0 * self.scale)
        return BODY_SEMI_AXES_MM[0] * self.scale * widen, BODY_SEMI_AXES_MM[1] * self.scale * widen


def torso_for_heart(heart_box: np.ndarray, scale: float, rng: np.random.Generator) -> TorsoParameters:
    """Chest of size ``scale`` around a heart whose vertices span ``heart_box`` ((2, 3) mm), with
    the body axis jittered by up to 5 mm * scale and a random rib phase."""
    jitter = rng.uniform(-5.0, 5.0, size=2) * scale
    centre = (BODY_OFFSET_MM[0] * scale + jitter[0], BODY_OFFSET_MM[1] * scale + jitter[1])
    return TorsoParameters(float(scale), (float(centre[0]), float(centre[1])), heart_box, float(rng.uniform()))


def material_volume(grid: Grid, torso: TorsoParameters, heart_labels: np.ndarray | None = None) -> np.ndarray:
    """Material indices of the chest sampled at the voxel centres of ``grid``.

    Args:
        grid: the voxel grid (any affine).
        torso: the patient's chest.
        heart_labels: optional ``(Z, Y, X)`` uint8 label indices 0..7 on ``grid`` (the voxelised
            heart); without it, the heart's place is mediastinal fat.

    Returns:
        ``(Z, Y, X)`` uint8 :class:`~fedsim_tf.physics.materials.Material` indices.

    Raises:
        ValueError: ``heart_labels`` of a shape other than ``grid.shape`` or values above 7.
    """
    s = torso.scale
    xyz = grid.voxel_centres()
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    cx, cy = torso.body_centre
    dx, dy = x - cx, y - cy
    a, b = torso.semi_axes(z)

    def inside_shrunk(margin_mm: float) -> np.ndarray:
        m = margin_mm * s
        return (dx / (a - m)) ** 2 + (dy / (b - m)) ** 2 <= 1.0

    out = np.full(grid.shape, Material.AIR, dtype=np.uint8)
    out[inside_shrunk(0.0)] = Material.ADIPOSE
    out[inside_shrunk(FAT_MM)] = Material.SOFT_TISSUE

    wall_inner = FAT_MM + MUSCLE_MM
    cavity_margin = wall_inner + RIB_LAYER_MM
    rib_layer = inside_shrunk(wall_inner) & ~inside_shrunk(cavity_margin)
    angle_from_front = np.abs(np.arctan2(dx, dy))
    rib_pos = (z + RIB_SLOPE * dy) / (RIB_PERIOD_MM * s) + torso.rib_phase
    on_rib = (rib_pos - np.floor(rib_pos)) < RIB_WIDTH_MM / RIB_PERIOD_MM
    out[rib_layer & on_rib & (angle_from_front > CARTILAGE_HALF_ANGLE)] = Material.CORTICAL_BONE
    out[rib_layer & (dy > 0) & (np.abs(dx) < STERNUM_HALF_WIDTH_MM * s)] = Material.CORTICAL_BONE

    cavity = inside_shrunk(cavity_margin)
    out[cavity] = Material.LUNG

    lo, hi = torso.heart_box
    heart_centre = (lo + hi) / 2
    dome_top = lo[2] + DIAPHRAGM_BELOW_HEART_MM * s
    dome_x = cx - 0.3 * a
    dome = dome_top - ((x - dome_x) ** 2 + dy**2) / (2.0 * DIAPHRAGM_RADIUS_MM * s)
    out[cavity & (z < dome)] = Material.SOFT_TISSUE

    spine_y = cy - SPINE_DEPTH * b
    out[cavity & (np.abs(dx) < MEDIASTINUM_HALF_WIDTH_MM * s) & (y > spine_y) & (z >= dome)] = Material.ADIPOSE
    semi = (hi - lo) / 2 + HEART_FAT_MARGIN_MM * s
    in_heart_fat = np.sum(((xyz - heart_centre) / semi) ** 2, axis=-1) <= 1.0
    out[in_heart_fat & inside_shrunk(cavity_margin)] = Material.ADIPOSE

    body = inside_shrunk(0.0)
    out[inside_shrunk(FAT_MM) & (np.abs(dx) < BACK_MUSCLE_HALF_WIDTH_MM * s) & (y < spine_y)] = Material.SOFT_TISSUE

    r_vertebra = np.hypot(dx, y - spine_y)
    vertebra_pos = z / (VERTEBRA_PERIOD_MM * s)
    in_disc = (vertebra_pos - np.floor(vertebra_pos)) < DISC_MM / VERTEBRA_PERIOD_MM
    vertebra = r_vertebra <= VERTEBRA_RADIUS_MM * s
    out[vertebra] = Material.CORTICAL_BONE
    out[vertebra & in_disc] = Material.SOFT_TISSUE
    canal_y = spine_y - (VERTEBRA_RADIUS_MM + CANAL_RADIUS_MM + ARCH_MM / 2) * s
    r_canal = np.hypot(dx, y - canal_y)
    out[(r_canal <= (CANAL_RADIUS_MM + ARCH_MM) * s) & body] = Material.CORTICAL_BONE
    out[r_canal <= CANAL_RADIUS_MM * s] = Material.SOFT_TISSUE

    ax, ay = cx + AORTA_OFFSET_MM[0] * s, spine_y + AORTA_OFFSET_MM[1] * s
    out[np.hypot(x - ax, y - ay) <= AORTA_RADIUS_MM * s] = Material.ENHANCED_BLOOD

    if heart_labels is not None:
        labels = np.asarray(heart_labels)
        if labels.shape != grid.shape:
            raise ValueError(f"heart_labels shape {labels.shape} does not match grid shape {grid.shape}")
        if labels.size and int(labels.max()) > len(STRUCTURE_MATERIALS):
            raise ValueError(f"heart_labels must be label indices 0..{len(STRUCTURE_MATERIALS)}")
        atlas = np.array([0, *STRUCTURE_MATERIALS], dtype=np.uint8)
        heart = labels > 0
        out[heart] = atlas[labels[heart]]
    return out
