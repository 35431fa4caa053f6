"""Parametric whole-heart template and a seeded population sampler.

Every structure is one subdivided icosphere (level 3: 642 vertices, 1280 faces, the same
vertex order for every heart) mapped into space by a chain of maps that are each injective
and orientation preserving, so every mesh is closed, watertight, outward wound and free of
self-intersections by construction:

1. star-shaped radial map ``u -> rho(u) u`` of the unit sphere (``rho > 0``): a superquadric
   with separate semi-axes (and exponents) for the upper and lower halves, times a smooth
   positive modulation ``exp(sum_k c_k b_k(u))`` over degree-1/2 polynomials (shape detail),
   times an optional smooth septal dent (RV);
2. triangular shear maps ``x -> x + f(y, z)`` (Jacobian determinant 1): the RV "wrap"
   around the septum and the vessel bends;
3. a rotation and translation placing the part in the heart.

Anatomy (world frame RAS+, mm: +x patient right, +y anterior, +z superior). A cardiac frame
``(S, Q, B)`` is built from the long axis: ``B`` points from the apex to the base (the long
axis base -> apex is ``-B``, left-anterior-inferior), ``S`` points from the LV across the
septum to the RV (right-anterior), ``Q = B x S`` (anterior-superior). The origin ``M`` is the
mitral-plane centre. The LV is an egg with its base at ``M``; the RV lies on the ``+S`` side,
shorter, wrapped around the septum; the atria sit beyond the base (above and behind their
ventricles); the aorta leaves the LV base and runs up and slightly right; the pulmonary artery
leaves the RV outflow tract in front of the aortic root and runs up, back and left.

LV myocardium representation: ``lv_myo`` is the closed **epicardial** surface. It encloses the
LV blood pool (the same radial map with every semi-axis larger, so containment is exact); the
cavity is carved out by the voxeliser's precedence, blood pools and vessels win over the
myocardium. The myocardial volume is therefore ``vol(lv_myo) - vol(lv)``. Neighbouring
structures touch or overlap by a few mm (e.g. RV on the septum, aortic root in the LV base);
the same precedence decides those voxels.

Adult template volumes (checked in tests): LV blood pool 100-180 mL, RV 110-200 mL,
LA 50-90 mL, RA 50-100 mL, LV myocardium (epicardial minus LV volume) 90-160 mL, aortic
diameter 25-35 mm, PA diameter 20-30 mm; the whole heart fits a 150 mm cube. The ``adult``
preset spreads around it (size sd 8 % linear, truncated at +-20 %, as adult ventricular volumes
vary by 20-25 %; chambers +-4 % sd linear): its samples lie within LV 60-300 mL, RV 60-300 mL,
LA 30-150 mL, RA 30-150 mL. Every built heart has its vertex
centroid at the origin.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from fedsim_tf.anatomy import NUM_STRUCTURES, STRUCTURE_NAMES
from fedsim_tf.shape.mesh import HeartMesh, StructureMesh

TEMPLATE_VERSION = 2
"""Bumped whenever the template geometry or the sampler changes (keys the SSM cache)."""

ICOSPHERE_LEVEL = 3
NUM_SHAPE_BASIS = 8
"""Number of smooth modulation functions per structure (see :func:`_shape_basis`)."""


@functools.lru_cache(maxsize=4)
def _icosphere(level: int) -> tuple[np.ndarray, np.ndarray]:
    """In-process cached unit icosphere.

    Returns:
        ``(V, 3)`` float64 unit vertices and ``(F, 3)`` int64 faces wound outward; both
        read-only. ``V = 10 * 4**level + 2``.
    """
    t = (1.0 + 5.0**0.5) / 2.0
    v = np.array(
        [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
         [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]],
        dtype=np.float64,
    )
    f = np.array(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
         [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
         [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]],
        dtype=np.int64,
    )
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for _ in range(level):
        edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
        unique, inverse = np.unique(edges, axis=0, return_inverse=True)
        mid = v[unique].mean(axis=1)
        mid /= np.linalg.norm(mid, axis=1, keepdims=True)
        ab, bc, ca = len(v) + inverse.reshape(3, -1)
        a, b, c = f.T
        f = np.concatenate(
            [np.stack(t3, axis=1) for t3 in ((a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca))]
        )
        v = np.concatenate([v, mid])
    v.setflags(write=False)
    f.setflags(write=False)
    return v, f


def _shape_basis(u: np.ndarray) -> np.ndarray:
    """Smooth functions on the unit sphere used to modulate a part's radius.

    Args:
        u: ``(V, 3)`` unit directions (local part frame).

    Returns:
        ``(V, NUM_SHAPE_BASIS)``: ``x, y, z, xy, yz, zx, x^2 - y^2, 3z^2 - 1`` (bounded by 2).
    """
    x, y, z = u.T
    return np.stack([x, y, z, x * y, y * z, z * x, x * x - y * y, 3 * z * z - 1], axis=1)


@dataclass(frozen=True)
class _Part:
    """One structure in its local frame, then placed (internal builder description).

    Lengths in mm. ``semi_xy``: local x/y semi-axes; ``semi_top``/``semi_bottom``: local +z/-z
    semi-axes; ``exp_top``/``exp_bottom``: superquadric exponent of each half (2 = ellipsoid,
    larger = blunter, e.g. a capped tube);
    ``dent``: fractional radius reduction on the local -x side; ``wrap``: shear
    ``x -= wrap * y**2 / semi_y``; ``bend``: shears ``(x, y) += bend * z**2 / semi_top``;
    ``rotation``: ``(3, 3)`` local -> world columns; ``centre``: ``(3,)`` world mm;
    ``bumps``: ``(NUM_SHAPE_BASIS,)`` log-radius coefficients.
    """

    semi_xy: tuple[float, float]
    semi_top: float
    semi_bottom: float
    exp_top: float
    exp_bottom: float
    rotation: np.ndarray
    centre: np.ndarray
    bumps: np.ndarray
    dent: float = 0.0
    wrap: float = 0.0
    bend: tuple[float, float] = (0.0, 0.0)

    def vertices(self, u: np.ndarray) -> np.ndarray:
        """Map ``(V, 3)`` unit-sphere vertices to ``(V, 3)`` world positions in mm."""
        ux, uy, uz = u.T
        ax, ay = self.semi_xy
        az = np.where(uz > 0, self.semi_top, self.semi_bottom)
        ez = np.where(uz > 0, self.exp_top, self.exp_bottom)
        q = np.hypot(ux / ax, uy / ay)
        rho = (q**ez + np.abs(uz / az) ** ez) ** (-1.0 / ez)
        rho = rho * np.exp(_shape_basis(u) @ self.bumps)
        rho = rho * (1.0 - self.dent * np.where(ux < 0, ux * ux, 0.0))
        p = rho[:, None] * u
        p[:, 0] -= self.wrap * p[:, 1] ** 2 / ay
        p[:, 0] += self.bend[0] * p[:, 2] ** 2 / self.semi_top
        p[:, 1] += self.bend[1] * p[:, 2] ** 2 / self.semi_top
        return p @ self.rotation.T + self.centre


_ADULT_MM: dict[str, float] = {
    "lv_radius": 27.0, "lv_base": 30.0, "lv_apex": 55.0, "wall": 8.5,
    "rv_depth": 21.0, "rv_width": 40.0, "rv_base": 30.0, "rv_apex": 48.0,
    "la_x": 30.0, "la_y": 24.0, "la_z": 23.0,
    "ra_x": 25.0, "ra_y": 24.0, "ra_z": 26.0,
    "aorta_radius": 14.0, "aorta_half_length": 32.0,
    "pa_radius": 12.5, "pa_half_length": 25.0,
}
"""Adult template dimensions in mm (semi-axes, wall thickness, vessel radii/half lengths)."""

_LONG_AXIS = np.array([-0.5, 0.5, -0.7])
"""Template long axis base -> apex (left, anterior, inferior), normalised when used."""


@dataclass(frozen=True)
class HeartShapeParameters:
    """Parameters of one heart (all factors are linear, 1 = adult template).

    Attributes:
        size: overall linear scale.
        lv, rv, la, ra: chamber dilation (> 1) or hypoplasia (< 1) factors.
        wall: LV wall-thickness factor.
        aorta, pa: vessel calibre (radius) factors.
        aorta_tilt, pa_tilt: ``(dx, dy)`` added to the vessel's unit axis before normalising
            (about radians for small values; +x right, +y anterior).
        axis_tilt: ``(dx, dy, dz)`` added to the unit long axis before normalising.
        bumps: ``(7, NUM_SHAPE_BASIS)`` log-radius modulation coefficients per structure.
    """

    size: float = 1.0
    lv: float = 1.0
    rv: float = 1.0
    la: float = 1.0
    ra: float = 1.0
    wall: float = 1.0
    aorta: float = 1.0
    pa: float = 1.0
    aorta_tilt: tuple[float, float] = (0.0, 0.0)
    pa_tilt: tuple[float, float] = (0.0, 0.0)
    axis_tilt: tuple[float, float, float] = (0.0, 0.0, 0.0)
    bumps: np.ndarray = field(default_factory=lambda: np.zeros((NUM_STRUCTURES, NUM_SHAPE_BASIS)))

    def __post_init__(self) -> None:
        factors = (self.size, self.lv, self.rv, self.la, self.ra, self.wall, self.aorta, self.pa)
        if not all(np.isfinite(f) and f > 0 for f in factors):
            raise ValueError(f"HeartShapeParameters: size/dilation/calibre factors must be > 0, got {factors}")
        bumps = np.asarray(self.bumps, dtype=np.float64)
        if bumps.shape != (NUM_STRUCTURES, NUM_SHAPE_BASIS) or not np.all(np.isfinite(bumps)):
            raise ValueError(
                f"HeartShapeParameters.bumps must be finite ({NUM_STRUCTURES}, {NUM_SHAPE_BASIS}), got {bumps.shape}"
            )
        object.__setattr__(self, "bumps", bumps)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _cardiac_frame(axis_tilt: tuple[float, float, float]) -> np.ndarray:
    """``(3, 3)`` rotation with columns ``(S, Q, B)`` (see module docstring)."""
    base = -_unit(_unit(_LONG_AXIS) + np.asarray(axis_tilt))
    towards_rv = np.array([1.0, 0.5, 0.0])
    s = _unit(towards_rv - (towards_rv @ base) * base)
    return np.stack([s, np.cross(base, s), base], axis=1)


def _vessel_frame(axis: np.ndarray) -> np.ndarray:
    """``(3, 3)`` rotation whose third column is the unit vessel axis (world)."""
    z = _unit(axis)
    x = _unit(np.array([1.0, 0.0, 0.0]) - z[0] * z)
    return np.stack([x, np.cross(z, x), z], axis=1)


def build_heart(params: HeartShapeParameters | None = None) -> HeartMesh:
    """Build one heart from its parameters (``None``: the adult template).

    Args:
        params: shape parameters; ``None`` means ``HeartShapeParameters()``.

    Returns:
        HeartMesh with 642 vertices per structure in the fixed icosphere order, world RAS+ mm,
        vertex centroid at the origin.
    """
    p = HeartShapeParameters() if params is None else params
    d = {k: v * p.size for k, v in _ADULT_MM.items()}
    frame = _cardiac_frame(p.axis_tilt)
    s_dir, q_dir, b_dir = frame.T
    mitral = np.zeros(3)

    lv_r, lv_base, lv_apex = d["lv_radius"] * p.lv, d["lv_base"] * p.lv, d["lv_apex"] * p.lv
    wall = d["wall"] * p.wall
    lv_centre = mitral - lv_base * b_dir
    rv_depth, rv_width = d["rv_depth"] * p.rv, d["rv_width"] * p.rv
    rv_base, rv_apex = d["rv_base"] * p.rv, d["rv_apex"] * p.rv
    rv_centre = lv_centre + (lv_r + wall + rv_depth - 4.0 * p.size) * s_dir + 0.15 * rv_width * q_dir
    rv_centre = rv_centre + (lv_base - rv_base + 4.0 * p.size) * b_dir
    la = np.array([d["la_x"], d["la_y"], d["la_z"]]) * p.la
    la_centre = mitral + 0.85 * la[2] * b_dir - 0.25 * la[0] * s_dir - 0.35 * la[1] * q_dir
    ra = np.array([d["ra_x"], d["ra_y"], d["ra_z"]]) * p.ra
    tricuspid = rv_centre + rv_base * b_dir - 0.1 * rv_width * q_dir
    ra_centre = tricuspid + 0.8 * ra[2] * b_dir + 0.3 * ra[0] * s_dir - 0.4 * ra[1] * q_dir
    ao_r, ao_h = d["aorta_radius"] * p.aorta, d["aorta_half_length"]
    ao_axis = _unit(np.array([0.2 + p.aorta_tilt[0], 0.0 + p.aorta_tilt[1], 1.0]))
    ao_root = mitral + 0.45 * lv_r * s_dir + 0.1 * lv_r * q_dir - 0.1 * lv_base * b_dir
    pa_r, pa_h = d["pa_radius"] * p.pa, d["pa_half_length"]
    pa_axis = _unit(np.array([-0.5 + p.pa_tilt[0], -0.1 + p.pa_tilt[1], 1.0]))
    pa_root = rv_centre + 0.75 * rv_base * b_dir + 0.55 * rv_width * q_dir - 0.8 * rv_depth * s_dir

    ao_frame, pa_frame = _vessel_frame(ao_axis), _vessel_frame(pa_axis)
    parts = {
        "lv_myo": _Part((lv_r + wall, lv_r + wall), lv_base + 0.35 * wall, lv_apex + 0.9 * wall,
                        2.5, 2.0, frame, lv_centre, p.bumps[0]),
        "la": _Part((la[0], la[1]), la[2], la[2], 2.0, 2.0, frame, la_centre, p.bumps[1]),
        "lv": _Part((lv_r, lv_r), lv_base, lv_apex, 2.5, 2.0, frame, lv_centre, p.bumps[0]),
        "ra": _Part((ra[0], ra[1]), ra[2], ra[2], 2.0, 2.0, frame, ra_centre, p.bumps[3]),
        "rv": _Part((rv_depth, rv_width), rv_base, rv_apex, 2.5, 2.0, frame, rv_centre, p.bumps[4],
                    dent=0.45, wrap=0.35),
        "aorta": _Part((ao_r, ao_r), ao_h, ao_h, 6.0, 6.0, ao_frame, ao_root + ao_h * ao_axis,
                       p.bumps[5], bend=(0.1, 0.0)),
        "pa": _Part((pa_r, pa_r), pa_h, pa_h, 6.0, 6.0, pa_frame, pa_root + pa_h * pa_axis,
                    p.bumps[6], bend=(-0.1, 0.0)),
    }
    u, faces = _icosphere(ICOSPHERE_LEVEL)
    verts = [parts[name].vertices(u) for name in STRUCTURE_NAMES]
    centroid = np.concatenate(verts).mean(axis=0)
    return HeartMesh(tuple(StructureMesh(n, v - centroid, faces) for n, v in zip(STRUCTURE_NAMES, verts)))


def template_heart() -> HeartMesh:
    """The adult template (:func:`build_heart` with default parameters)."""
    return build_heart()


@dataclass(frozen=True)
class PopulationPreset:
    """Distribution of :class:`HeartShapeParameters` for one population.

    Attributes:
        description: one line for reports.
        size_range: ``(low, high)`` overall linear scale: uniform, or the truncation of a normal
            distribution around its midpoint when ``size_sd > 0``.
        pattern_probability: chance that a heart shows the preset's pathology pattern.
        pattern: target factors ``(lv, rv, la, ra, aorta, pa)`` at full severity; a heart with
            the pattern gets ``factor ** severity``, severity uniform in ``[0.5, 1]``.
        chamber_sd: log-normal sd of every chamber/vessel factor (healthy variability).
        wall_range: ``(low, high)`` uniform wall-thickness factor.
        tilt_sd: sd of vessel and long-axis tilts (unit-vector offsets, ~radians).
        bump_sd: sd of the log-radius modulation coefficients.
        size_sd: sd of the normal size distribution (0: uniform over ``size_range``).
    """

    description: str
    size_range: tuple[float, float]
    pattern_probability: float
    pattern: tuple[float, float, float, float, float, float]
    chamber_sd: float = 0.07
    wall_range: tuple[float, float] = (0.85, 1.2)
    tilt_sd: float = 0.08
    bump_sd: float = 0.03
    size_sd: float = 0.0


PRESETS: dict[str, PopulationPreset] = {
    "adult": PopulationPreset(
        "healthy adults (like MM-WHS CT)", (0.8, 1.2), 0.0, (1.0,) * 6, chamber_sd=0.04,
        bump_sd=0.02, size_sd=0.08,
    ),
    "chd_lc": PopulationPreset(
        "paediatric CHD, dilated right heart / hypoplastic left heart, large PA",
        (0.45, 0.9), 0.8, (0.65, 1.4, 0.8, 1.35, 0.7, 1.3), chamber_sd=0.1,
    ),
    "chd_mc": PopulationPreset(
        "paediatric CHD, dilated left heart / hypoplastic right heart, enlarged aorta",
        (0.45, 0.9), 0.8, (1.35, 0.7, 1.3, 0.85, 1.35, 0.8), chamber_sd=0.1,
    ),
}
"""Named populations: ``adult`` and two paediatric congenital-heart-disease-like mixes
(1 month to 21 years: linear size 0.45-0.9 of the adult; 80 % show the pattern)."""


def sample_parameters(rng: np.random.Generator, preset: str = "adult") -> HeartShapeParameters:
    """Draw one heart's parameters from a named preset (see :data:`PRESETS`)."""
    if preset not in PRESETS:
        raise ValueError(f"preset: unknown population preset {preset!r}, expected one of {sorted(PRESETS)}")
    spec = PRESETS[preset]
    if spec.size_sd > 0:
        size = np.clip(rng.normal(np.mean(spec.size_range), spec.size_sd), *spec.size_range)
    else:
        size = rng.uniform(*spec.size_range)
    severity = rng.uniform(0.5, 1.0) if rng.uniform() < spec.pattern_probability else 0.0
    factors = np.asarray(spec.pattern) ** severity * np.exp(rng.normal(0.0, spec.chamber_sd, 6))
    lv, rv, la, ra, aorta, pa = (float(f) for f in factors)
    return HeartShapeParameters(
        size=float(size), lv=lv, rv=rv, la=la, ra=ra, wall=float(rng.uniform(*spec.wall_range)),
        aorta=aorta, pa=pa,
        aorta_tilt=tuple(rng.normal(0.0, spec.tilt_sd, 2)),
        pa_tilt=tuple(rng.normal(0.0, spec.tilt_sd, 2)),
        axis_tilt=tuple(rng.normal(0.0, spec.tilt_sd, 3)),
        bumps=rng.normal(0.0, spec.bump_sd, (NUM_STRUCTURES, NUM_SHAPE_BASIS)),
    )


def sample_heart(rng: np.random.Generator, preset: str = "adult") -> HeartMesh:
    """One random heart of a preset population (template topology, centroid at the origin)."""
    return build_heart(sample_parameters(rng, preset))


def sample_population(n: int, preset: str = "adult", seed: int = 0) -> list[HeartMesh]:
    """``n`` hearts of a preset population, deterministic for a given ``seed``.

    Args:
        n: number of hearts (>= 0).
        preset: a key of :data:`PRESETS`.
        seed: seed of ``numpy.random.default_rng``.
    """
    if n < 0:
        raise ValueError(f"n: number of hearts must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    return [sample_heart(rng, preset) for _ in range(n)]
