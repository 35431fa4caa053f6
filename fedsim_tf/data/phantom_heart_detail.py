"""The heart's materials: contrast, walls, fat, muscles, valves and vessels around the labels.

Painted into a :class:`~fedsim_tf.data.phantom_object.BasisVolume` that already holds the chest
(sizes are adult values in mm, multiplied by the heart's ``size``):

1. great vessels (enhanced blood, background label): four pulmonary veins from the left atrium
   (radius 6, 35 long, left-heart contrast), the left and right pulmonary arteries from the top of
   the pulmonary trunk (radius 9, 45 long, right-heart contrast), the aortic arch from the top of
   the ascending aorta to the descending aorta, the superior vena cava (radius 9, dense inflow
   from the injection arm) and the inferior vena cava (radius 11, unopacified blood);
2. walls on the background side of the blood pools: right-ventricular free wall (myocardium,
   3.5), atrial and arterial walls (soft tissue, 1.5);
3. epicardial fat of varying thickness (1.5-7.5, smooth random) around heart and walls, the
   pericardium (soft tissue, 1.2) outside it, both only over lung, fat or soft tissue;
4. coronary arteries in that fat (radius 1.6, left-heart contrast): the atrioventricular groove
   ring (right coronary and circumflex) and the interventricular grooves (LAD, posterior
   descending), where the heart's surface meets the atrioventricular and septal planes;
5. the labelled structures: myocardium with 2 % density texture and perfusion contrast;
   blood pools with left- or right-heart contrast, a front-to-back gradient (layering), 2 %
   texture, and in the right atrium the mixing of dense caval inflow from above and
   unopacified inflow from below (smooth random swirls);
6. inside the ventricles' labels (as annotators include them in the cavity): two papillary
   muscles and apical trabeculation in the LV, heavier trabeculation and the moderator band in
   the RV (myocardium);
7. valve leaflets (soft tissue, one voxel, with random gaps) where LV meets LA, RV meets RA,
   the aorta meets the LV and the pulmonary trunk meets the RV.

So intensity edges no longer coincide with label edges and no structure has one attenuation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fedsim_tf.anatomy import NAME_TO_INDEX
from fedsim_tf.data.phantom_heart import PhantomHeart
from fedsim_tf.data.phantom_object import BasisVolume, Region, capsule, segment_distance, smooth_noise
from fedsim_tf.physics.materials import Material

BOX_MARGIN_MM = 20.0
SOFT_SURROUNDINGS = (Material.LUNG, Material.ADIPOSE, Material.SOFT_TISSUE)
"""Materials the fat, pericardium and coronaries may overwrite."""


@dataclass(frozen=True)
class Contrast:
    """Iodine (mg I/mL) of one contrast-enhanced scan.

    Attributes:
        left: left atrium, left ventricle, aorta, pulmonary veins, coronaries.
        right: right atrium (before mixing), right ventricle, pulmonary arteries.
        svc: superior vena cava (dense inflow from the injection arm).
        ivc: inferior vena cava (mostly unopacified).
        myocardium: myocardial perfusion.
        gradient: fractional change of the blood's iodine per 100 mm towards anterior (layering).
    """

    left: float
    right: float
    svc: float
    ivc: float
    myocardium: float
    gradient: float


def draw_contrast(rng: np.random.Generator, left_range: tuple[float, float]) -> Contrast:
    """Contrast of one scan: left-heart iodine uniform in ``left_range`` (mg/mL), the rest
    relative to it (bolus timing)."""
    left = rng.uniform(*left_range)
    right = left * rng.uniform(0.75, 1.15)
    return Contrast(
        left=float(left), right=float(right), svc=float(right * rng.uniform(1.3, 2.5)),
        ivc=float(right * rng.uniform(0.05, 0.3)), myocardium=float(left * rng.uniform(0.12, 0.25)),
        gradient=float(rng.uniform(-0.05, 0.05)),
    )


@dataclass(frozen=True)
class Tube:
    """A tapered vessel segment (world mm) with its iodine (mg/mL)."""

    start: np.ndarray
    end: np.ndarray
    r_start: float
    r_end: float
    iodine_mg_ml: float


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _extreme(heart: PhantomHeart, name: str, direction: np.ndarray) -> np.ndarray:
    """Vertex of structure ``name`` farthest along ``direction``."""
    vertices = heart.mesh.structures[NAME_TO_INDEX[name] - 1].vertices
    return vertices[np.argmax(vertices @ direction)]


@dataclass(frozen=True)
class GreatVessels:
    """Vessels joining the labelled structures (module docstring, step 1)."""

    pulmonary_veins: tuple[Tube, ...]
    pulmonary_arteries: tuple[Tube, ...]
    arch: tuple[Tube, ...]
    svc: Tube
    ivc: Tube

    @property
    def tubes(self) -> list[Tube]:
        """Every segment."""
        return [*self.pulmonary_veins, *self.pulmonary_arteries, *self.arch, self.svc, self.ivc]


def great_vessels(heart: PhantomHeart, contrast: Contrast, descending_aorta_xy: tuple[float, float]) -> GreatVessels:
    """The great vessels of ``heart`` (module docstring, step 1).

    Args:
        heart: the phantom heart.
        contrast: iodine levels of the scan.
        descending_aorta_xy: ``(x, y)`` world mm of the descending aorta (where the arch ends).
    """
    s = heart.size
    up = np.array([0.0, 0.0, 1.0])
    veins = []
    for side in (-1.0, 1.0):  # pulmonary veins: left (-x) and right (+x), upper and lower
        for height in (-1.0, 1.0):
            direction = _unit(np.array([side, -0.55, 0.4 * height]))
            start = _extreme(heart, "la", direction) - 3.0 * s * direction
            veins.append(Tube(start, start + 35.0 * s * direction, 6.0 * s, 5.0 * s, contrast.left))
    pa_top = _extreme(heart, "pa", np.array([0.0, -0.2, 1.0]))
    arteries = [Tube(pa_top, pa_top + 45.0 * s * _unit(d), 9.0 * s, 7.0 * s, contrast.right)
                for d in (np.array([1.0, -0.45, -0.15]), np.array([-1.0, -0.5, 0.05]))]
    aorta_top = _extreme(heart, "aorta", up)
    apex = aorta_top + np.array([-12.0, -22.0, 18.0]) * s
    descending = np.array([descending_aorta_xy[0], descending_aorta_xy[1], aorta_top[2]])
    arch = (Tube(aorta_top - 4.0 * s * up, apex, 13.0 * s, 12.0 * s, contrast.left),
            Tube(apex, descending, 12.0 * s, 11.0 * s, contrast.left))
    ra_top = _extreme(heart, "ra", np.array([0.1, -0.2, 1.0]))
    svc = Tube(ra_top - 4.0 * s * up, ra_top + np.array([6.0, -8.0, 90.0]) * s, 9.0 * s, 9.0 * s, contrast.svc)
    ra_bottom = _extreme(heart, "ra", np.array([0.0, -0.3, -1.0]))
    ivc = Tube(ra_bottom + 4.0 * s * up, ra_bottom + np.array([0.0, -18.0, -70.0]) * s, 11.0 * s, 11.0 * s,
               contrast.ivc)
    return GreatVessels(tuple(veins), tuple(arteries), arch, svc, ivc)


def paint_tubes(volume: BasisVolume, tubes: list[Tube], allowed: np.ndarray) -> None:
    """Paint vessels as enhanced blood where ``allowed`` (``(Z, Y, X)`` bool) holds."""
    for tube in tubes:
        found = capsule(volume.grid, tube.start, tube.end, tube.r_start, tube.r_end)
        if found is not None:
            region, mask = found
            volume.fill(mask & allowed[region], Material.ENHANCED_BLOOD, iodine_mg_ml=tube.iodine_mg_ml, region=region)


def _heart_box(labels: np.ndarray, spacing: np.ndarray) -> Region:
    """Bounding box of the labelled heart plus :data:`BOX_MARGIN_MM`, clipped to the grid."""
    where = np.argwhere(labels > 0)
    margin = np.ceil(BOX_MARGIN_MM / spacing).astype(int)
    lo = np.maximum(where.min(axis=0) - margin, 0)
    hi = np.minimum(where.max(axis=0) + margin + 1, labels.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


class _Geometry:
    """Distances and axes of the labelled heart inside its box (``region``)."""

    def __init__(self, heart: PhantomHeart, labels: np.ndarray, volume: BasisVolume) -> None:
        self.spacing = volume.grid.spacing_zyx
        self.region = _heart_box(labels, self.spacing)
        self.labels = labels[self.region]
        k, j, i = np.meshgrid(*(np.arange(s.start, s.stop) for s in self.region), indexing="ij")
        self.points = volume.grid.index_to_world(np.stack([i, j, k], axis=-1))
        lv = heart.mesh.structures[NAME_TO_INDEX["lv"] - 1].vertices
        centre = lv.mean(axis=0)
        axis = np.linalg.svd(lv - centre, full_matrices=False)[2][0]
        towards_la = heart.structure_centre("la") - centre
        self.axis = axis if axis @ towards_la > 0 else -axis  # apex -> base
        along = (lv - centre) @ self.axis
        self.apex = centre + along.min() * self.axis
        self.length = float(along.max() - along.min())
        radial = lv - centre - np.outer(along, self.axis)
        self.lv_radius = float(np.median(np.linalg.norm(radial, axis=1)))
        septal = heart.structure_centre("rv") - centre
        self.septal = _unit(septal - (septal @ self.axis) * self.axis)
        self.centre = centre

    def distance_to(self, mask: np.ndarray) -> np.ndarray:
        """Distance (mm) of every box voxel to the nearest voxel of ``mask`` (box-shaped bool)."""
        return ndimage.distance_transform_edt(~mask, sampling=self.spacing).astype(np.float32)

    def height(self) -> np.ndarray:
        """Position along the LV long axis: 0 at the apex, 1 at the base (box-shaped)."""
        return ((self.points - self.apex) @ self.axis) / self.length

    def noise(self, sigma_mm: float, rng: np.random.Generator) -> np.ndarray:
        """Box-shaped :func:`smooth_noise` with correlation length ``sigma_mm``."""
        return smooth_noise(self.labels.shape, sigma_mm / self.spacing, rng)


def _walls(geo: _Geometry, volume: BasisVolume, size: float) -> np.ndarray:
    """Paint the walls on the background side of the blood pools; returns the wall mask."""
    background = geo.labels == 0
    walls = np.zeros_like(background)
    for name, thickness, material in (("rv", 3.5, Material.MYOCARDIUM), ("la", 1.5, Material.SOFT_TISSUE),
                                      ("ra", 1.5, Material.SOFT_TISSUE), ("aorta", 1.5, Material.SOFT_TISSUE),
                                      ("pa", 1.5, Material.SOFT_TISSUE)):
        wall = background & ~walls & (geo.distance_to(geo.labels == NAME_TO_INDEX[name]) <= thickness * size)
        wall &= volume.material[geo.region] != Material.ENHANCED_BLOOD  # vessels joining the pool stay open
        volume.fill(wall, material, region=geo.region)
        walls |= wall
    return walls


def _fat_and_coronaries(geo: _Geometry, volume: BasisVolume, walls: np.ndarray, contrast: Contrast, size: float,
                        rng: np.random.Generator) -> None:
    heart = (geo.labels > 0) | walls
    distance = geo.distance_to(heart)
    soft = np.isin(volume.material[geo.region], SOFT_SURROUNDINGS) & ~heart
    thickness = size * (1.5 + 6.0 * np.clip(0.5 + 0.35 * geo.noise(12.0, rng), 0.0, 1.0))
    volume.fill(soft & (distance <= thickness), Material.ADIPOSE, region=geo.region)
    volume.fill(soft & (distance > thickness) & (distance <= thickness + 1.2), Material.SOFT_TISSUE, region=geo.region)
    radius = 1.6 * size
    base = geo.apex + geo.length * geo.axis
    av_plane = np.abs((geo.points - base + 6.0 * size * geo.axis) @ geo.axis)
    septal_plane = np.abs((geo.points - geo.centre - geo.septal * (geo.lv_radius + 4.0 * size)) @ geo.septal)
    shell = (distance >= 0.8) & (distance <= 0.8 + 2 * radius) & (geo.height() <= 1.0)
    coronary = soft & shell & ((av_plane <= radius) | (septal_plane <= radius))
    volume.fill(coronary, Material.ENHANCED_BLOOD, iodine_mg_ml=contrast.left, region=geo.region)


def _structures(geo: _Geometry, volume: BasisVolume, contrast: Contrast, vessels: GreatVessels,
                rng: np.random.Generator) -> None:
    labels = geo.labels
    texture = 1.0 + 0.02 * geo.noise(2.0, rng)
    myo = labels == NAME_TO_INDEX["lv_myo"]
    volume.fill(myo, Material.MYOCARDIUM, density=texture,
                iodine_mg_ml=contrast.myocardium * (1.0 + 0.2 * geo.noise(4.0, rng)), region=geo.region)
    layering = 1.0 + contrast.gradient * (geo.points[..., 1] - geo.centre[1]) / 100.0
    blood = labels >= NAME_TO_INDEX["la"]
    iodine = np.zeros(labels.shape, dtype=np.float32)
    for name, level in (("la", contrast.left), ("lv", contrast.left), ("aorta", contrast.left),
                        ("ra", contrast.right), ("rv", contrast.right), ("pa", contrast.right)):
        iodine[labels == NAME_TO_INDEX[name]] = level
    ra = labels == NAME_TO_INDEX["ra"]
    for entry, level in ((vessels.svc.start, contrast.svc), (vessels.ivc.start, contrast.ivc)):
        reach = np.exp(-np.linalg.norm(geo.points - entry, axis=-1) / 18.0)
        swirl = np.clip(0.5 + 0.5 * geo.noise(4.0, rng), 0.0, 1.0)
        iodine[ra] += ((level - contrast.right) * reach * swirl)[ra]
    iodine = np.maximum(iodine * layering * (1.0 + 0.02 * geo.noise(3.0, rng)), 0.0)
    volume.fill(blood, Material.ENHANCED_BLOOD, density=texture, iodine_mg_ml=iodine, region=geo.region)


def _ventricle_muscles(geo: _Geometry, volume: BasisVolume, contrast: Contrast, size: float,
                       rng: np.random.Generator) -> None:
    lv = geo.labels == NAME_TO_INDEX["lv"]
    rv = geo.labels == NAME_TO_INDEX["rv"]
    height = geo.height()
    muscle = np.zeros_like(lv)
    lateral = -geo.septal
    for angle in (np.deg2rad(50.0), -np.deg2rad(55.0)):  # anterolateral and posteromedial
        turn = np.cos(angle) * lateral + np.sin(angle) * np.cross(geo.axis, lateral)
        root = geo.apex + 0.3 * geo.length * geo.axis + 0.8 * geo.lv_radius * turn
        tip = geo.apex + 0.62 * geo.length * geo.axis + 0.45 * geo.lv_radius * turn
        distance, t = segment_distance(geo.points, root, tip)
        muscle |= distance <= size * (4.5 - 2.0 * t)
    near_myo = geo.distance_to(geo.labels == NAME_TO_INDEX["lv_myo"]) <= 2.5 * size
    fine = geo.noise(1.2, rng)
    muscle |= near_myo & (height < 0.65) & (fine > 0.6)
    lv_muscle = lv & muscle
    near_wall = geo.distance_to(~rv) <= 4.0 * size
    rv_muscle = rv & near_wall & (height < 0.75) & (geo.noise(1.5, rng) > 0.25)
    band_start = geo.centre + 0.25 * geo.length * (geo.apex - geo.centre) / np.linalg.norm(geo.apex - geo.centre)
    band_start = band_start + geo.septal * (geo.lv_radius + 8.0 * size)
    band_end = band_start + geo.septal * 25.0 * size
    rv_muscle |= rv & (segment_distance(geo.points, band_start, band_end)[0] <= 2.5 * size)
    both = lv_muscle | rv_muscle
    volume.fill(both, Material.MYOCARDIUM, iodine_mg_ml=contrast.myocardium, region=geo.region)


def _valves(geo: _Geometry, volume: BasisVolume, rng: np.random.Generator) -> None:
    voxel = float(geo.spacing.max())
    gaps = geo.noise(3.0, rng) > -0.6
    leaflets = np.zeros(geo.labels.shape, dtype=bool)
    for inside, other in (("lv", "la"), ("rv", "ra"), ("aorta", "lv"), ("pa", "rv")):
        near = geo.distance_to(geo.labels == NAME_TO_INDEX[other]) <= voxel
        leaflets |= (geo.labels == NAME_TO_INDEX[inside]) & near
    volume.fill(leaflets & gaps, Material.SOFT_TISSUE, region=geo.region)


def paint_heart(volume: BasisVolume, heart: PhantomHeart, labels: np.ndarray, contrast: Contrast,
                vessels: GreatVessels, rng: np.random.Generator) -> None:
    """Paint the heart and its surroundings (module docstring) into ``volume``.

    Args:
        volume: the chest on the output grid (painted in place).
        heart: the phantom heart.
        labels: ``(Z, Y, X)`` uint8 its label indices on ``volume.grid``.
        contrast: iodine levels of the scan.
        vessels: its great vessels (:func:`great_vessels`).
        rng: random source for textures and details.
    """
    if labels.shape != volume.grid.shape or not labels.any():
        raise ValueError(f"labels must be a non-empty heart on the grid {volume.grid.shape}, got {labels.shape}")
    paint_tubes(volume, vessels.tubes, (labels == 0) & (volume.material != Material.CORTICAL_BONE))
    geo = _Geometry(heart, labels, volume)
    walls = _walls(geo, volume, heart.size)
    _fat_and_coronaries(geo, volume, walls, contrast, heart.size, rng)
    _structures(geo, volume, contrast, vessels, rng)
    _ventricle_muscles(geo, volume, contrast, heart.size, rng)
    _valves(geo, volume, rng)
