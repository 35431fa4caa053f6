"""Settings of the CT simulator's scanner (a plain dataclass, so command lines are checked before
TensorFlow loads). The phantom hospitals' site protocols are a different thing:
:class:`fedsim_tf.data.scanners.ScannerSettings`."""

from __future__ import annotations

from dataclasses import dataclass

from fedsim_tf.physics import materials

MATERIALS: tuple[str, ...] = ("learned", "fixmat")
"""Material modes of the CT simulator: ``learned`` renders ``G_M``'s coarse attenuation map on the
coarse grid, ``fixmat`` the fixed per-structure atlas of the label map on the label grid."""


@dataclass(frozen=True)
class SimulatedScanner:
    """The simulated circular cone-beam scanner of :class:`fedsim_tf.physics.ct_simulator.CTSimulator`.

    Attributes:
        views: number of projections over a full 2 pi orbit.
        source_isocenter_mm: SID in mm; must exceed the volume's half-diagonal.
        source_detector_mm: SDD in mm, larger than SID.
        kev: effective energy in keV (water calibration and Fix-Mat atlas), within
            :data:`fedsim_tf.physics.materials.ENERGY_RANGE_KEV`.
        iodine_mg_ml: iodine concentration of contrast-enhanced blood in the Fix-Mat atlas (mg I / mL).
    """

    views: int = 48
    source_isocenter_mm: float = 750.0
    source_detector_mm: float = 1200.0
    kev: float = materials.REFERENCE_KEV
    iodine_mg_ml: float = 10.0

    def __post_init__(self) -> None:
        if self.views < 1:
            raise ValueError(f"SimulatedScanner.views must be >= 1, got {self.views}")
        if not 0 < self.source_isocenter_mm < self.source_detector_mm:
            raise ValueError(
                f"SimulatedScanner needs 0 < source_isocenter_mm ({self.source_isocenter_mm}) < "
                f"source_detector_mm ({self.source_detector_mm})"
            )
        low, high = materials.ENERGY_RANGE_KEV
        if not low <= self.kev <= high:
            raise ValueError(f"SimulatedScanner.kev={self.kev}: outside the material model's range [{low}, {high}] keV")
        if not self.iodine_mg_ml >= 0:
            raise ValueError(f"SimulatedScanner.iodine_mg_ml must be >= 0, got {self.iodine_mg_ml}")
