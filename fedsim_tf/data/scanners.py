"""Scanner and population settings of the three phantom hospitals (paper Table 1).

==========  ==========  =========  ======  ============  ===========  ==========  =========
site        population  volumes    keV     iodine mg/mL  blood HU     photons/px  window
==========  ==========  =========  ======  ============  ===========  ==========  =========
``CT20``    adult       12/4/4     70      8-12          264-368      2.6e4       none
``CT34LC``  ``chd_lc``  20/7/7     62      5-8           228-331      900         shepp_logan
``CT34MC``  ``chd_mc``  20/7/7     66      9-13          324-443      1e4         hann
==========  ==========  =========  ======  ============  ===========  ==========  =========

Noise is set by the dose, the body size and the reconstruction window; the sites are tuned so
that the image noise orders ``CT34MC < CT20 < CT34LC`` (low-dose paediatric protocol with a sharp
kernel is the noisiest, a smooth Hann kernel the quietest; measured on the --small preset, case 1001,
seed 0: about 14, 28 and 47 HU). Fields of view and voxel spacings
differ per site (the heart-centred output grid, ``fov_mm``).

Geometry (all sites: circular full scan, flat detector). The simulated object lives on two
grids: a fine grid over the output field of view (``simulation_factor`` times coarser than the
output grid: 32^3, 4.5-6 mm, which keeps a volume at about 10 s of CPU) and a coarse grid over the
whole chest (twice as coarse again) whose voxels inside the field of view are zero, so the sum of
both projections is the whole patient. The images' resolution is therefore that of the fine grid. The detector
pixel pitch at the isocentre equals the fine grid's voxel size; the detector is just wide and
tall enough for the largest chest of the site (:func:`detector_shape`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsim_tf.atomic import write_json_atomic
from fedsim_tf.physics import materials

COARSE_FACTOR = 2
"""Coarse (whole-chest) grid voxel size in fine-grid voxels."""
CHEST_RADIUS_MM = 215.0
"""Largest in-plane distance (mm) of the adult body surface from the heart centre (isocentre),
including the body-axis offset and jitter (see :mod:`fedsim_tf.data.phantom_anatomy`)."""
Z_MARGIN_MM = 32.0
"""Adult body length simulated above and below the field of view (mm)."""


@dataclass(frozen=True)
class ScannerSettings:
    """One phantom hospital: population, protocol and geometry.

    Attributes:
        site: site name (folder name).
        population: heart-population preset of :func:`fedsim_tf.shape.template.sample_population`.
        split: ``(train, val, test)`` volume counts (Table 1); their sum is the number of volumes.
        kev: effective energy in keV.
        iodine_mg_ml: ``(low, high)`` iodine concentration of the blood (mg I per mL), drawn
            uniformly per volume.
        photons_per_pixel: unattenuated photon count per detector pixel and view (dose).
        window: FDK apodisation window (``None`` = plain Ram-Lak, sharpest).
        output_shape: ``(Z, Y, X)`` voxels of the written image/label volumes.
        fov_mm: ``(z, y, x)`` extent (mm, edge to edge) of the heart-centred output grid.
        simulation_factor: the fine simulation grid is this many times coarser than the output
            grid (attenuation averaged over blocks, i.e. partial-volume correct).
        reconstruction_factor: FDK reconstructs on a grid this many times coarser than the
            output grid, then trilinear interpolation fills the output grid (the simulation's
            resolution is coarser than that anyway).
        num_views: projections over 2 pi.
        source_detector_distance: SDD in mm.
        source_isocenter_distance: SID in mm.
        max_body_scale: largest chest size of the population relative to an adult (sizes the
            detector).
        first_case: number of the first case (``ct_train_1001``).
    """

    site: str
    population: str
    split: tuple[int, int, int]
    kev: float
    iodine_mg_ml: tuple[float, float]
    photons_per_pixel: float
    window: str | None
    output_shape: tuple[int, int, int]
    fov_mm: tuple[float, float, float]
    simulation_factor: int
    reconstruction_factor: int
    num_views: int
    source_detector_distance: float
    source_isocenter_distance: float
    max_body_scale: float
    first_case: int = 1001

    def __post_init__(self) -> None:
        where = f"scanner settings of site {self.site!r}"
        if len(self.split) != 3 or min(self.split) < 0 or sum(self.split) <= 0:
            raise ValueError(f"{where}: split must be 3 non-negative counts with a positive sum, got {self.split}")
        lo, hi = materials.ENERGY_RANGE_KEV
        if not lo <= self.kev <= hi:
            raise ValueError(f"{where}: kev={self.kev} outside [{lo}, {hi}]")
        if not 0 <= self.iodine_mg_ml[0] <= self.iodine_mg_ml[1]:
            raise ValueError(f"{where}: iodine_mg_ml must be 0 <= low <= high, got {self.iodine_mg_ml}")
        if self.photons_per_pixel <= 0:
            raise ValueError(f"{where}: photons_per_pixel must be > 0, got {self.photons_per_pixel}")
        block = math.lcm(2 * self.simulation_factor * COARSE_FACTOR, self.reconstruction_factor)
        if min(self.simulation_factor, self.reconstruction_factor) < 1 or any(n % block for n in self.output_shape):
            raise ValueError(f"{where}: output_shape {self.output_shape} must be divisible by {block}")
        if min(self.fov_mm) <= 0 or self.num_views <= 0:
            raise ValueError(f"{where}: fov_mm and num_views must be positive")
        if not 0 < self.source_isocenter_distance < self.source_detector_distance:
            raise ValueError(f"{where}: need 0 < source_isocenter_distance < source_detector_distance")
        if self.source_isocenter_distance <= CHEST_RADIUS_MM * self.max_body_scale:
            raise ValueError(f"{where}: the source orbit (SID) must clear the largest chest")

    @property
    def num_volumes(self) -> int:
        """Total number of volumes (train + val + test)."""
        return sum(self.split)

    @property
    def output_spacing(self) -> tuple[float, float, float]:
        """``(sz, sy, sx)`` mm of the output grid."""
        return tuple(f / n for f, n in zip(self.fov_mm, self.output_shape))

    @property
    def fine_spacing(self) -> tuple[float, float, float]:
        """``(sz, sy, sx)`` mm of the fine simulation grid."""
        return tuple(s * self.simulation_factor for s in self.output_spacing)

    @property
    def blood_hu_range(self) -> tuple[float, float]:
        """Nominal HU of the enhanced blood at the lowest and highest iodine level."""
        hu = [
            float(materials.mu_to_hu(materials.material_mu(materials.Material.ENHANCED_BLOOD, self.kev, c), self.kev))
            for c in self.iodine_mg_ml
        ]
        return hu[0], hu[1]

    def detector_spacing(self) -> tuple[float, float]:
        """``(dv, du)`` mm: the fine grid's voxel size magnified to the detector."""
        magnification = self.source_detector_distance / self.source_isocenter_distance
        sz, _, sx = self.fine_spacing
        return sz * magnification, sx * magnification

    def detector_shape(self) -> tuple[int, int]:
        """``(H, W)`` pixels covering the largest chest of the site from every view angle.

        Columns: the tangent of the chest circle (radius ``r``) seen from the source,
        ``u = SDD r / sqrt(SID^2 - r^2)``; rows: the top of the simulated body on the side
        nearest the source, ``v = SDD z / (SID - r)``.
        """
        r = CHEST_RADIUS_MM * self.max_body_scale
        sid, sdd = self.source_isocenter_distance, self.source_detector_distance
        dv, du = self.detector_spacing()
        u_max = sdd * r / math.sqrt(sid**2 - r**2)
        v_max = sdd * self.body_half_length() / (sid - r)
        return 2 * math.ceil(v_max / dv) + 2, 2 * math.ceil(u_max / du) + 2

    def body_half_length(self) -> float:
        """Half the simulated body length along z (mm): the field of view plus margins, rounded
        up to whole coarse voxels."""
        coarse = self.fine_spacing[0] * COARSE_FACTOR
        half = self.fov_mm[0] / 2 + Z_MARGIN_MM * self.max_body_scale
        return math.ceil(half / coarse) * coarse

    def reduced(self, output_size: int, volumes_per_site: int, num_views: int) -> "ScannerSettings":
        """Same site and simulation grid with a cubic ``output_size`` output grid (a divisor of
        the current size), ``volumes_per_site`` volumes (all in the training split) and
        ``num_views`` views: the fast ``--small`` preset."""
        ratio = self.output_shape[0] // output_size
        if ratio * output_size != self.output_shape[0] or self.simulation_factor % ratio:
            raise ValueError(f"output_size {output_size} must divide {self.output_shape[0]} by a divisor "
                             f"of simulation_factor {self.simulation_factor}")
        return dataclasses.replace(
            self,
            split=(volumes_per_site, 0, 0),
            output_shape=(output_size,) * 3,
            simulation_factor=self.simulation_factor // ratio,
            num_views=num_views,
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly dict of the settings plus derived quantities (spacings, detector)."""
        out = dataclasses.asdict(self)
        out.update(
            num_volumes=self.num_volumes,
            output_spacing_mm=list(self.output_spacing),
            fine_spacing_mm=list(self.fine_spacing),
            blood_hu_range=list(self.blood_hu_range),
            detector_shape=list(self.detector_shape()),
            detector_spacing_mm=list(self.detector_spacing()),
            body_half_length_mm=self.body_half_length(),
            units={"kev": "keV", "iodine_mg_ml": "mg I/mL", "lengths": "mm", "fov_mm": "z, y, x"},
        )
        return out

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_json` atomically to ``path`` (``scanner.json``)."""
        return write_json_atomic(path, self.to_json())


SITES: tuple[ScannerSettings, ...] = (
    ScannerSettings(
        site="CT20", population="adult", split=(12, 4, 4), kev=70.0, iodine_mg_ml=(8.0, 12.0),
        photons_per_pixel=2.6e4, window=None, output_shape=(128, 128, 128), fov_mm=(176.0, 192.0, 192.0),
        simulation_factor=4, reconstruction_factor=2, num_views=90, source_detector_distance=1100.0, source_isocenter_distance=600.0,
        max_body_scale=1.1,
    ),
    ScannerSettings(
        site="CT34LC", population="chd_lc", split=(20, 7, 7), kev=62.0, iodine_mg_ml=(5.0, 8.0),
        photons_per_pixel=900.0, window="shepp_logan", output_shape=(128, 128, 128),
        fov_mm=(144.0, 144.0, 144.0), simulation_factor=4, reconstruction_factor=2, num_views=90,
        source_detector_distance=1000.0, source_isocenter_distance=570.0, max_body_scale=1.0,
    ),
    ScannerSettings(
        site="CT34MC", population="chd_mc", split=(20, 7, 7), kev=66.0, iodine_mg_ml=(9.0, 13.0),
        photons_per_pixel=1e4, window="hann", output_shape=(128, 128, 128), fov_mm=(160.0, 136.0, 136.0),
        simulation_factor=4, reconstruction_factor=2, num_views=72, source_detector_distance=1050.0, source_isocenter_distance=560.0,
        max_body_scale=1.0,
    ),
)
"""The default phantom hospitals (88 volumes in all)."""

SITE_NAMES: tuple[str, ...] = tuple(s.site for s in SITES)


def site_settings(name: str) -> ScannerSettings:
    """Settings of the site called ``name``."""
    for settings in SITES:
        if settings.site == name:
            return settings
    raise ValueError(f"unknown phantom site {name!r}; known sites: {', '.join(SITE_NAMES)}")
