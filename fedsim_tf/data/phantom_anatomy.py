"""Analytic chest around the heart: materials, bone marrow, lung texture and lung vessels.

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
   bony sternum on it; ribs and sternum have a 2 mm cortex around cancellous bone;
3. thoracic cavity inside the chest wall: inflated lung, with a smooth density texture (12 %)
   and a gravity gradient (up to 30 % denser at the back), and branching lung vessels
   (:func:`draw_lung_vessels`) rooted at the pulmonary arteries and veins;
4. liver and diaphragm: soft tissue below a dome (right side higher) just under the heart;
5. mediastinum: adipose in a 60 mm wide band from the sternum to the spine and in an ellipsoid
   enclosing the heart with a 3 mm margin (the epicardial fat is painted with the heart);
6. back muscles: soft tissue within 55 mm of the midline behind the vertebral bodies;
7. spine: vertebral bodies (radius 22, 22 mm tall, with 6 mm soft-tissue discs; a 2.5 mm
   cortex around cancellous bone), the spinal canal (radius 9, soft tissue) inside a 7 mm bony arch;
8. descending aorta: enhanced blood, radius 12, left-anterior of the vertebral bodies.

Cancellous bone is a mixture: :data:`CANCELLOUS_BONE_FRACTION` cortical bone in soft tissue
(about 400-500 HU). The heart and its surroundings are painted afterwards
(:mod:`fedsim_tf.data.phantom_heart_detail`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsim_tf.data.phantom_heart_detail import Tube, paint_tubes
from fedsim_tf.data.phantom_object import BasisVolume, smooth_noise
from fedsim_tf.grid import Grid
from fedsim_tf.physics.materials import Material

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
HEART_FAT_MARGIN_MM = 3.0
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
CORTEX_MM = 2.0
VERTEBRA_CORTEX_MM = 2.5
CANCELLOUS_BONE_FRACTION = 0.3
LUNG_TEXTURE = 0.12
LUNG_GRAVITY = 0.3
VESSEL_GENERATIONS = 5


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


def descending_aorta_xy(torso: TorsoParameters) -> tuple[float, float]:
    """``(x, y)`` world mm of the descending aorta's axis."""
    cx, cy = torso.body_centre
    spine_y = cy - SPINE_DEPTH * torso.semi_axes(np.array(torso.heart_box.mean(axis=0)[2]))[1]
    return float(cx + AORTA_OFFSET_MM[0] * torso.scale), float(spine_y + AORTA_OFFSET_MM[1] * torso.scale)


def chest_materials(grid: Grid, torso: TorsoParameters) -> tuple[np.ndarray, np.ndarray]:
    """Material indices of the chest sampled at the voxel centres of ``grid``.

    Args:
        grid: the voxel grid (any affine).
        torso: the patient's chest.

    Returns:
        ``(Z, Y, X)`` uint8 :class:`~fedsim_tf.physics.materials.Material` indices (the heart's
        place is mediastinal fat) and ``(Z, Y, X)`` bool, the cancellous interior of the bones.
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
    rib_core = inside_shrunk(wall_inner + CORTEX_MM / s) & ~inside_shrunk(cavity_margin - CORTEX_MM / s)
    angle_from_front = np.abs(np.arctan2(dx, dy))
    rib_pos = (z + RIB_SLOPE * dy) / (RIB_PERIOD_MM * s) + torso.rib_phase
    rib_frac = rib_pos - np.floor(rib_pos)
    on_rib = rib_frac < RIB_WIDTH_MM / RIB_PERIOD_MM
    rib_inner = (rib_frac > CORTEX_MM / RIB_PERIOD_MM) & (rib_frac < (RIB_WIDTH_MM - CORTEX_MM) / RIB_PERIOD_MM)
    ribs = rib_layer & on_rib & (angle_from_front > CARTILAGE_HALF_ANGLE)
    sternum = rib_layer & (dy > 0) & (np.abs(dx) < STERNUM_HALF_WIDTH_MM * s)
    out[ribs | sternum] = Material.CORTICAL_BONE
    sternum_core = sternum & rib_core & (np.abs(dx) < (STERNUM_HALF_WIDTH_MM - CORTEX_MM) * s)
    cancellous = (ribs & rib_inner & rib_core) | sternum_core

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
    out[in_heart_fat & cavity] = Material.ADIPOSE

    body = inside_shrunk(0.0)
    out[inside_shrunk(FAT_MM) & (np.abs(dx) < BACK_MUSCLE_HALF_WIDTH_MM * s) & (y < spine_y)] = Material.SOFT_TISSUE

    r_vertebra = np.hypot(dx, y - spine_y)
    vertebra_pos = z / (VERTEBRA_PERIOD_MM * s)
    in_disc = (vertebra_pos - np.floor(vertebra_pos)) < DISC_MM / VERTEBRA_PERIOD_MM
    vertebra = r_vertebra <= VERTEBRA_RADIUS_MM * s
    out[vertebra] = Material.CORTICAL_BONE
    out[vertebra & in_disc] = Material.SOFT_TISSUE
    cancellous &= ~vertebra
    cancellous |= vertebra & ~in_disc & (r_vertebra <= VERTEBRA_RADIUS_MM * s - VERTEBRA_CORTEX_MM)
    canal_y = spine_y - (VERTEBRA_RADIUS_MM + CANAL_RADIUS_MM + ARCH_MM / 2) * s
    r_canal = np.hypot(dx, y - canal_y)
    out[(r_canal <= (CANAL_RADIUS_MM + ARCH_MM) * s) & body] = Material.CORTICAL_BONE
    out[r_canal <= CANAL_RADIUS_MM * s] = Material.SOFT_TISSUE

    ax, ay = cx + AORTA_OFFSET_MM[0] * s, spine_y + AORTA_OFFSET_MM[1] * s
    out[np.hypot(x - ax, y - ay) <= AORTA_RADIUS_MM * s] = Material.ENHANCED_BLOOD
    cancellous &= out == Material.CORTICAL_BONE
    return out, cancellous


def draw_lung_vessels(roots: list[Tube], scale: float, rng: np.random.Generator) -> list[Tube]:
    """Branching vessel trees continuing each root tube from its end: every segment splits into
    two children turned by 20-40 degrees, radius x0.75 and length x0.8 per generation, for
    :data:`VESSEL_GENERATIONS` generations (first children 30 mm long at adult ``scale`` 1)."""
    vessels: list[Tube] = []
    for root in roots:
        direction = (root.end - root.start) / np.linalg.norm(root.end - root.start)
        stack = [(root.end, direction, root.r_end, 30.0 * scale, 0)]
        while stack:
            start, direction, radius, length, generation = stack.pop()
            if generation >= VESSEL_GENERATIONS:
                continue
            for _ in range(2):
                turn = rng.standard_normal(3)
                turn -= (turn @ direction) * direction
                angle = np.deg2rad(rng.uniform(20.0, 40.0))
                child = np.cos(angle) * direction + np.sin(angle) * turn / np.linalg.norm(turn)
                end = start + length * child
                child_radius = 0.75 * radius
                vessels.append(Tube(start, end, child_radius, 0.85 * child_radius, root.iodine_mg_ml))
                stack.append((end, child, child_radius, 0.8 * length, generation + 1))
    return vessels


def chest_volume(
    grid: Grid, torso: TorsoParameters, blood_iodine_mg_ml: float, vessels: list[Tube], rng: np.random.Generator
) -> BasisVolume:
    """The chest as basis maps on ``grid`` (module docstring; no heart yet).

    Args:
        grid: the voxel grid.
        torso: the patient's chest.
        blood_iodine_mg_ml: iodine of the descending aorta (left-heart contrast), mg/mL.
        vessels: lung vessels (painted over lung only).
        rng: random source of the lung texture.
    """
    material, cancellous = chest_materials(grid, torso)
    volume = BasisVolume.from_materials(grid, material, blood_iodine_mg_ml)
    volume.fill(cancellous, Material.SOFT_TISSUE)
    volume.blend(cancellous, Material.CORTICAL_BONE, CANCELLOUS_BONE_FRACTION)
    lung = material == Material.LUNG
    xyz = grid.voxel_centres()
    _, b = torso.semi_axes(xyz[..., 2])
    back = np.clip((torso.body_centre[1] - xyz[..., 1]) / b + 0.5, 0.0, 1.0)
    texture = (1.0 + LUNG_TEXTURE * smooth_noise(grid.shape, 3.0 / grid.spacing_zyx, rng)) * (1.0 + LUNG_GRAVITY * back)
    volume.fill(lung, Material.LUNG, density=np.maximum(texture, 0.2))
    paint_tubes(volume, vessels, lung)
    return volume
