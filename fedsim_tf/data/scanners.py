"""Scanner and population settings of the three phantom hospitals (paper Table 1).

==========  ==========  =======  ======================  ============  ==========  ========  ===========  ======
site        population  volumes  tube                    iodine mg/mL  quanta/px   det. PSF  kernel       motion
==========  ==========  =======  ======================  ============  ==========  ========  ===========  ======
``CT20``    adult       12/4/4   120 kVp, 6 Al + 0.2 Cu  10-14         6e5         0.4 px    Ram-Lak      none
``CT34LC``  ``chd_lc``  20/7/7   80 kVp, 3 Al + 0.1 Cu   4-6           8e3         0.45 px   Shepp-Logan  1.5 mm
``CT34MC``  ``chd_mc``  20/7/7   100 kVp, 4 Al + 0.1 Cu  7-10          4e4         0.3 px    cosine       none
==========  ==========  =======  ======================  ============  ==========  ========  ===========  ======

Each site has its own spectrum (:func:`fedsim_tf.physics.spectrum.tube_spectrum`), so bone,
iodine and beam hardening differ between sites; its HU scale is calibrated on a water cylinder of
``calibration_water_mm`` diameter (water there reads 0 HU; :attr:`ScannerSettings.kev` is the
energy at which monochromatic water has that calibration attenuation). Noise comes from the dose
(quanta per detector pixel and view), the electronic noise and the body size; the detector
point-spread function (Gaussian, ``detector_blur_px``) and the FDK apodisation window set the
sharpness. The paediatric low-dose site images fast hearts (``motion_mm``: peak cardiac
displacement during the rotation).

Geometry (all sites: circular full scan, flat detector). The object is simulated on the output
grid itself over the field of view (``fov_mm``, heart-centred), and on a coarse grid
(``chest_voxel_mm``) over the rest of the chest, whose voxels inside the field of view are zero,
so the sum of both projections is the whole patient. The detector pixel pitch at the isocentre
equals the output voxel size; its columns cover the largest chest of the site from every angle,
its rows the field of view (the body continues above and below, as in a real scanner).
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
from fedsim_tf.physics.spectrum import XraySpectrum, effective_water_mu, tube_spectrum

CHEST_RADIUS_MM = 215.0
"""Largest in-plane distance (mm) of the adult body surface from the heart centre (isocentre),
including the body-axis offset and jitter (see :mod:`fedsim_tf.data.phantom_anatomy`)."""
MOTION_GROUPS = 6
"""A moving heart is frozen in this many consecutive groups of views (its phases)."""


@dataclass(frozen=True)
class ScannerSettings:
    """One phantom hospital: population, protocol and geometry.

    Attributes:
        site: site name (folder name).
        population: heart-population preset of :func:`fedsim_tf.shape.template.sample_population`.
        split: ``(train, val, test)`` volume counts (Table 1); their sum is the number of volumes.
        kvp: tube voltage (kV).
        filtration_mm: ``(aluminium, copper)`` total filtration in mm.
        calibration_water_mm: diameter (mm) of the water cylinder the HU scale is calibrated on.
        iodine_mg_ml: ``(low, high)`` iodine concentration of the left-heart blood (mg I per mL),
            drawn uniformly per volume.
        photons_per_pixel: unattenuated quanta per detector pixel and view (dose).
        electronic_noise: standard deviation of the detector's additive noise, in quanta.
        detector_blur_px: standard deviation (detector pixels) of the Gaussian detector PSF.
        window: FDK apodisation window (``None`` = plain Ram-Lak, sharpest).
        motion_mm: peak cardiac displacement at the heart's surface during the scan (0: still).
        output_shape: ``(Z, Y, X)`` voxels of the written image/label volumes.
        fov_mm: ``(z, y, x)`` extent (mm, edge to edge) of the heart-centred output grid.
        num_views: projections over 2 pi (a multiple of :data:`MOTION_GROUPS`).
        source_detector_distance: SDD in mm.
        source_isocenter_distance: SID in mm.
        max_body_scale: largest chest size of the population relative to an adult (sizes the
            detector).
        chest_voxel_mm: target voxel size (mm) of the coarse grid outside the field of view.
        first_case: number of the first case (``ct_train_1001``).
    """

    site: str
    population: str
    split: tuple[int, int, int]
    kvp: float
    filtration_mm: tuple[float, float]
    calibration_water_mm: float
    iodine_mg_ml: tuple[float, float]
    photons_per_pixel: float
    electronic_noise: float
    detector_blur_px: float
    window: str | None
    motion_mm: float
    output_shape: tuple[int, int, int]
    fov_mm: tuple[float, float, float]
    num_views: int
    source_detector_distance: float
    source_isocenter_distance: float
    max_body_scale: float
    chest_voxel_mm: float = 6.0
    first_case: int = 1001

    def __post_init__(self) -> None:
        where = f"scanner settings of site {self.site!r}"
        if len(self.split) != 3 or min(self.split) < 0 or sum(self.split) <= 0:
            raise ValueError(f"{where}: split must be 3 non-negative counts with a positive sum, got {self.split}")
        if not 0 <= self.iodine_mg_ml[0] <= self.iodine_mg_ml[1]:
            raise ValueError(f"{where}: iodine_mg_ml must be 0 <= low <= high, got {self.iodine_mg_ml}")
        if self.photons_per_pixel <= 0 or self.electronic_noise < 0 or self.detector_blur_px < 0 or self.motion_mm < 0:
            raise ValueError(f"{where}: photons_per_pixel must be > 0; electronic_noise, detector_blur_px, "
                             "motion_mm >= 0")
        if any(n % (2 * self.coarse_factor) for n in self.output_shape):
            raise ValueError(f"{where}: output_shape {self.output_shape} must be divisible by {2 * self.coarse_factor}")
        if min(self.fov_mm) <= 0 or self.num_views <= 0 or self.num_views % MOTION_GROUPS:
            raise ValueError(f"{where}: fov_mm must be positive and num_views a positive multiple of {MOTION_GROUPS}")
        if not 0 < self.source_isocenter_distance < self.source_detector_distance:
            raise ValueError(f"{where}: need 0 < source_isocenter_distance < source_detector_distance")
        if self.source_isocenter_distance <= CHEST_RADIUS_MM * self.max_body_scale:
            raise ValueError(f"{where}: the source orbit (SID) must clear the largest chest")
        self.spectrum()  # validates kvp and filtration

    @property
    def num_volumes(self) -> int:
        """Total number of volumes (train + val + test)."""
        return sum(self.split)

    @property
    def output_spacing(self) -> tuple[float, float, float]:
        """``(sz, sy, sx)`` mm of the output grid."""
        return tuple(f / n for f, n in zip(self.fov_mm, self.output_shape))

    @property
    def coarse_factor(self) -> int:
        """Coarse (whole-chest) voxel size in output voxels: the largest power of two whose voxels
        are at most ``chest_voxel_mm`` (at least 1)."""
        ratio = self.chest_voxel_mm / max(self.output_spacing)
        return 2 ** max(0, math.floor(math.log2(ratio))) if ratio >= 1 else 1

    def spectrum(self) -> XraySpectrum:
        """The site's tube spectrum."""
        return tube_spectrum(self.kvp, *self.filtration_mm)

    @property
    def calibration_mu(self) -> float:
        """Attenuation (/cm) the reconstruction maps to 0 HU (water cylinder calibration)."""
        return effective_water_mu(self.spectrum(), self.calibration_water_mm)

    @property
    def kev(self) -> float:
        """Effective energy (keV): monochromatic water attenuates :attr:`calibration_mu` there."""
        return materials.energy_of_water_mu(self.calibration_mu)

    @property
    def blood_hu_range(self) -> tuple[float, float]:
        """Nominal HU of the left-heart blood at the lowest and highest iodine level (at :attr:`kev`)."""
        kev = self.kev
        hu = [float(materials.mu_to_hu(materials.material_mu(materials.Material.ENHANCED_BLOOD, kev, c), kev))
              for c in self.iodine_mg_ml]
        return hu[0], hu[1]

    def detector_spacing(self) -> tuple[float, float]:
        """``(dv, du)`` mm: the output voxel size magnified to the detector."""
        magnification = self.source_detector_distance / self.source_isocenter_distance
        sz, _, sx = self.output_spacing
        return sz * magnification, sx * magnification

    def _fov_rows_mm(self) -> float:
        """Half height (mm on the detector) of the field of view's shadow."""
        radius = math.hypot(self.fov_mm[1], self.fov_mm[2]) / 2
        return self.source_detector_distance * self.fov_mm[0] / 2 / (self.source_isocenter_distance - radius)

    def detector_shape(self) -> tuple[int, int]:
        """``(H, W)`` pixels: columns cover the largest chest (radius ``r``) from every angle,
        ``u = SDD r / sqrt(SID^2 - r^2)``; rows the field of view's shadow."""
        r = CHEST_RADIUS_MM * self.max_body_scale
        sid, sdd = self.source_isocenter_distance, self.source_detector_distance
        dv, du = self.detector_spacing()
        u_max = sdd * r / math.sqrt(sid**2 - r**2)
        return 2 * math.ceil(self._fov_rows_mm() / dv) + 2, 2 * math.ceil(u_max / du) + 2

    def body_half_length(self) -> float:
        """Half the simulated body length along z (mm): every ray that reaches the detector stays
        inside it within the chest, rounded up to whole coarse voxels."""
        rows = (self.detector_shape()[0] / 2) * self.detector_spacing()[0]
        reach = rows * (self.source_isocenter_distance + CHEST_RADIUS_MM * self.max_body_scale)
        half = reach / self.source_detector_distance
        coarse = self.output_spacing[0] * self.coarse_factor
        return math.ceil(half / coarse) * coarse

    def reduced(self, output_size: int, volumes_per_site: int, num_views: int) -> "ScannerSettings":
        """Same site with a cubic ``output_size`` output grid over the same field of view,
        ``volumes_per_site`` volumes (all in the training split) and ``num_views`` views: the
        fast ``--small`` preset."""
        return dataclasses.replace(
            self, split=(volumes_per_site, 0, 0), output_shape=(output_size,) * 3, num_views=num_views,
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly dict of the settings plus derived quantities (spacings, detector, energy)."""
        out = dataclasses.asdict(self)
        out.update(
            num_volumes=self.num_volumes,
            output_spacing_mm=list(self.output_spacing),
            effective_kev=self.kev,
            mean_photon_kev=self.spectrum().mean_energy_kev,
            blood_hu_range=list(self.blood_hu_range),
            detector_shape=list(self.detector_shape()),
            detector_spacing_mm=list(self.detector_spacing()),
            body_half_length_mm=self.body_half_length(),
            units={"kvp": "kV", "filtration_mm": "Al, Cu mm", "iodine_mg_ml": "mg I/mL", "lengths": "mm",
                   "fov_mm": "z, y, x", "electronic_noise": "quanta"},
        )
        return out

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_json` atomically to ``path`` (``scanner.json``)."""
        return write_json_atomic(path, self.to_json())


SITES: tuple[ScannerSettings, ...] = (
    ScannerSettings(
        site="CT20", population="adult", split=(12, 4, 4), kvp=120.0, filtration_mm=(6.0, 0.2),
        calibration_water_mm=300.0, iodine_mg_ml=(10.0, 14.0), photons_per_pixel=6e5, electronic_noise=5.0,
        detector_blur_px=0.4, window=None, motion_mm=0.0, output_shape=(128, 128, 128),
        fov_mm=(176.0, 192.0, 192.0), num_views=288, source_detector_distance=1100.0,
        source_isocenter_distance=600.0, max_body_scale=1.25,
    ),
    ScannerSettings(
        site="CT34LC", population="chd_lc", split=(20, 7, 7), kvp=80.0, filtration_mm=(3.0, 0.1),
        calibration_water_mm=160.0, iodine_mg_ml=(4.0, 6.0), photons_per_pixel=8e3, electronic_noise=3.0,
        detector_blur_px=0.45, window="shepp_logan", motion_mm=1.5, output_shape=(128, 128, 128),
        fov_mm=(144.0, 144.0, 144.0), num_views=240, source_detector_distance=1000.0,
        source_isocenter_distance=570.0, max_body_scale=1.0,
    ),
    ScannerSettings(
        site="CT34MC", population="chd_mc", split=(20, 7, 7), kvp=100.0, filtration_mm=(4.0, 0.1),
        calibration_water_mm=200.0, iodine_mg_ml=(7.0, 10.0), photons_per_pixel=4e4, electronic_noise=4.0,
        detector_blur_px=0.3, window="cosine", motion_mm=0.0, output_shape=(128, 128, 128),
        fov_mm=(160.0, 136.0, 136.0), num_views=216, source_detector_distance=1050.0,
        source_isocenter_distance=560.0, max_body_scale=1.0,
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
