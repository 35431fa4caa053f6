"""The CT simulator (paper Sec. 2.1, "CT Simulation"): shape + material -> label map + CT volume.

Rendering chain for an attenuation volume ``mu`` (``[B, Z, Y, X]``, /cm, on a voxel grid):

1. ``mu`` is converted to /mm (``x 0.1``), since :func:`pyronn_ops.cone_projection3d` integrates
   ``value * mm``;
2. a circular cone-beam scan of that grid (:func:`cone_geometry`: isocentre at the volume centre,
   full 2 pi orbit, one detector pixel per voxel at the isocentre, a square detector covering the
   whole volume) gives line integrals ``[B, N, H, W]``;
3. FDK (:func:`pyronn_ops.fdk.fdk_reconstruction`, PYRO-NN 0.1.0 Ram-Lak, cosine weights) gives
   back ``mu`` in /mm, converted to /cm (``x 10``);
4. Hounsfield units with the water calibration of :mod:`fedsim_tf.physics.materials`,
   ``HU = 1000 (mu - mu_water) / (mu_water - mu_air)`` at the effective energy;
5. the data layer's normalisation (:mod:`fedsim_tf.intensity`): HU window ``[-200, 800]`` mapped
   linearly to ``[-1, 1]`` (``(HU + 200) / 500 - 1``) and clipped.

Gradients flow through the projector and FDK with PYRO-NN's registered gradients (the paper's
choice). The clip of step 5 is a *straight-through* clip: the forward value is exactly
``clip(x, -1, 1)``, the backward pass is the identity. A hard clip would give zero gradient to every
voxel outside the window (e.g. a generated voxel darker than -200 HU could never be pulled back
towards a soft-tissue target); the straight-through gradient always points the loss's way.

Two modes (:class:`CTSimulator`):

* ``"learned"``: the material map ``tau_M`` of ``G_M`` (coarse ``c^3`` grid, paper 16^3) is rendered
  on the coarse grid -> coarse CT ``X~_z``;
* ``"fixmat"`` (the paper's Fix-Mat): the attenuation is the fixed per-label atlas of
  :func:`fedsim_tf.physics.materials.structure_lut` evaluated on the full-resolution label map
  (paper 128^3), rendered on the label grid with the same projector and FDK.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

import pyronn_ops
from pyronn_ops.fdk import fdk_reconstruction

from fedsim_tf.intensity import hu_to_unit
from fedsim_tf.physics import materials
from fedsim_tf.physics.simulated_scanner import MATERIALS, SimulatedScanner
from fedsim_tf.models.generative_model import GenerativeModel
from fedsim_tf.shape.shape_op import ShapeModel, ShapeRenderer, render_shapes

def cone_geometry(
    volume_shape: tuple[int, int, int], spacing_mm: tuple[float, float, float], scanner: SimulatedScanner
) -> pyronn_ops.GeometryCone3D:
    """A circular cone-beam geometry (with trajectory) that sees the whole volume in every view.

    Args:
        volume_shape: ``(Z, Y, X)`` voxels.
        spacing_mm: ``(sz, sy, sx)`` voxel size in mm.
        scanner: views, distances.

    Returns:
        The geometry: detector pixel = the smallest voxel size magnified to the detector
        (``SDD / SID``); square detector of even size covering the cone tangent to the volume's
        circumscribed sphere; ``views`` projections over ``2 pi``; PYRO-NN 0.1 trajectory.

    Raises:
        ValueError: when the source would be inside the volume's circumscribed sphere.
    """
    shape = np.asarray(volume_shape, dtype=np.float64)
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    radius = 0.5 * float(np.linalg.norm(shape * spacing))
    sid, sdd = scanner.source_isocenter_mm, scanner.source_detector_mm
    if sid <= radius:
        raise ValueError(f"source_isocenter_mm={sid} must exceed the volume's half-diagonal {radius:.1f} mm")
    pixel = float(spacing.min()) * sdd / sid
    half_extent = sdd * radius / math.sqrt(sid**2 - radius**2)
    size = 2 * int(math.ceil(half_extent / pixel))
    geometry = pyronn_ops.GeometryCone3D(
        volume_shape=volume_shape,
        volume_spacing=spacing,
        detector_shape=(size, size),
        detector_spacing=(pixel, pixel),
        number_of_projections=scanner.views,
        angular_range=2.0 * math.pi,
        source_detector_distance=sdd,
        source_isocenter_distance=sid,
    )
    geometry.set_trajectory(pyronn_ops.circular_trajectory_3d(geometry))
    return geometry


def straight_through_clip(x: tf.Tensor, low: float, high: float) -> tf.Tensor:
    """``clip(x, low, high)`` in the forward pass, identity gradient in the backward pass."""
    return x + tf.stop_gradient(tf.clip_by_value(x, low, high) - x)


def hu_to_normalised(hu: tf.Tensor) -> tf.Tensor:
    """HU -> the ``[-1, 1]`` scale of :mod:`fedsim_tf.intensity`, clipped straight-through."""
    return straight_through_clip(hu_to_unit(hu), -1.0, 1.0)


class ConeBeamCT(keras.layers.Layer):
    """Attenuation volume -> simulated CT on the data layer's scale (steps 1-5 of the module docstring).

    Args:
        volume_shape: ``(Z, Y, X)`` voxels of the rendered grid.
        spacing_mm: ``(sz, sy, sx)`` voxel size in mm.
        scanner: the scanner settings.
    """

    def __init__(
        self,
        volume_shape: tuple[int, int, int],
        spacing_mm: tuple[float, float, float],
        scanner: SimulatedScanner = SimulatedScanner(),
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.volume_shape = tuple(int(n) for n in volume_shape)
        self.spacing_mm = tuple(float(s) for s in spacing_mm)
        self.scanner = scanner
        self.geometry = cone_geometry(self.volume_shape, self.spacing_mm, scanner)
        self._water = materials.water_mu(scanner.kev)
        self._air = materials.material_mu(materials.Material.AIR, scanner.kev)

    def reconstruct_mu(self, mu_per_cm: tf.Tensor) -> tf.Tensor:
        """``[B, Z, Y, X]`` attenuation (/cm) -> ``[B, Z, Y, X]`` FDK reconstruction (/cm)."""
        sinogram = pyronn_ops.cone_projection3d(tf.cast(mu_per_cm, tf.float32) * 0.1, self.geometry)
        return fdk_reconstruction(sinogram, self.geometry, filter="ram_lak") * 10.0

    def call(self, mu_per_cm: tf.Tensor) -> tf.Tensor:
        """``[B, Z, Y, X]`` attenuation (/cm) -> ``[B, Z, Y, X]`` float32 CT in ``[-1, 1]``."""
        hu = 1000.0 * (self.reconstruct_mu(mu_per_cm) - self._water) / (self._water - self._air)
        return hu_to_normalised(hu)

    def get_config(self) -> dict[str, object]:
        return {
            **super().get_config(),
            "volume_shape": list(self.volume_shape),
            "spacing_mm": list(self.spacing_mm),
            "scanner": asdict(self.scanner),
        }

    @classmethod
    def from_config(cls, config: dict[str, object]) -> "ConeBeamCT":
        config = dict(config)
        config["scanner"] = SimulatedScanner(**config["scanner"])  # type: ignore[arg-type]
        return cls(**config)


def fix_mat_attenuation(labels: tf.Tensor, scanner: SimulatedScanner) -> tf.Tensor:
    """Fix-Mat atlas: ``[B, Z, Y, X]`` int label indices 0..7 -> ``[B, Z, Y, X]`` float32 mu (/cm).

    Background is water; each structure gets its material's attenuation at ``scanner.kev``
    (:data:`fedsim_tf.physics.materials.STRUCTURE_MATERIALS`, blood pools with
    ``scanner.iodine_mg_ml`` of iodine).
    """
    lut = tf.constant(materials.structure_lut(scanner.kev, scanner.iodine_mg_ml), dtype=tf.float32)
    return tf.gather(lut, tf.cast(labels, tf.int32))


class SimulatedCT(NamedTuple):
    """Output of :class:`CTSimulator`.

    Attributes:
        labels: ``[B, Z, Y, X]`` int32 label indices 0..7 on the label grid (no gradient).
        mask: ``[B, Z, Y, X]`` float32 binary heart mask, finite-difference gradient w.r.t. the
            shape parameters.
        ct: ``[B, c, c, c]`` coarse CT (learned mode) or ``[B, Z, Y, X]`` CT (Fix-Mat), ``[-1, 1]``.
    """

    labels: tf.Tensor
    mask: tf.Tensor
    ct: tf.Tensor


class CTSimulator(keras.layers.Layer):
    """``CT_sim(S_z, tau_M) -> (Y_z, X~_z)``: the shape op plus the cone-beam CT renderer.

    Args:
        renderer: the shape op's SSM, label grid and finite-difference steps.
        coarse_shape: ``(c, c, c)`` voxels of the material grid (learned mode).
        coarse_spacing_mm: ``(sz, sy, sx)`` mm of the material grid (the label grid's extent / c).
        scanner: the scanner settings.
        mode: ``"learned"`` (render ``tau_M`` on the coarse grid) or ``"fixmat"`` (render the
            atlas attenuation of the label map on the label grid).
    """

    def __init__(
        self,
        renderer: ShapeRenderer,
        coarse_shape: tuple[int, int, int],
        coarse_spacing_mm: tuple[float, float, float],
        scanner: SimulatedScanner = SimulatedScanner(),
        mode: str = "learned",
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in MATERIALS:
            raise ValueError(f"CTSimulator mode must be one of {MATERIALS}, got {mode!r}")
        self.renderer = renderer
        self.mode = mode
        self.scanner = scanner
        self.coarse_shape = tuple(int(n) for n in coarse_shape)
        self.coarse_spacing_mm = tuple(float(s) for s in coarse_spacing_mm)
        if mode == "learned":
            self.scan = ConeBeamCT(self.coarse_shape, self.coarse_spacing_mm, scanner, name="coarse_scan")
        else:
            grid = renderer.grid
            self.scan = ConeBeamCT(grid.shape, tuple(grid.spacing_zyx), scanner, name="fixmat_scan")

    def call(self, shape_params: tf.Tensor, material: tf.Tensor | None = None) -> SimulatedCT:
        """Render a batch.

        Args:
            shape_params: ``[B, n_modes + 7]`` shape parameters (layout of
                :mod:`fedsim_tf.shape.shape_op`).
            material: ``[B, c, c, c]`` attenuation (/cm), ``[z, y, x]``; required in learned mode,
                ignored in Fix-Mat mode.
        """
        labels, mask = render_shapes(shape_params, self.renderer)
        if self.mode == "fixmat":
            return SimulatedCT(labels, mask, self.scan(fix_mat_attenuation(labels, self.scanner)))
        if material is None:
            raise ValueError("CTSimulator in learned mode needs the material map")
        return SimulatedCT(labels, mask, self.scan(material))

    def get_config(self) -> dict[str, object]:
        """Serialisable settings; the renderer (SSM + grid) is not serialised and is rebuilt by the stage."""
        return {
            **super().get_config(),
            "coarse_shape": list(self.coarse_shape),
            "coarse_spacing_mm": list(self.coarse_spacing_mm),
            "scanner": asdict(self.scanner),
            "mode": self.mode,
        }


def simulator_for(model: GenerativeModel, ssm: ShapeModel, mode: str = "learned") -> CTSimulator:
    """The simulator of a recorded generative model: its label grid, coarse grid, scanner and
    finite-difference steps, with ``ssm`` (the shape model the record names)."""
    coarse = model.coarse_grid
    renderer = ShapeRenderer(ssm, model.label_grid, model.fd_steps)
    return CTSimulator(renderer, coarse.shape, tuple(coarse.spacing_zyx), model.scanner, mode=mode)
