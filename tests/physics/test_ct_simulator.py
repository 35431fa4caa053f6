"""CT simulator against analytic truths: the geometry sees the whole volume, an analytic water/blood
phantom comes back at the reference table's Hounsfield units (two-sided bounds), Fix-Mat renders each
structure at its table value, and the straight-through clip keeps gradients outside the window."""

import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from fedsim_tf.grid import Grid
from fedsim_tf.physics.ct_simulator import (
    ConeBeamCT,
    CTSimulator,
    cone_geometry,
    fix_mat_attenuation,
    hu_to_normalised,
)
from fedsim_tf.physics.simulated_scanner import SimulatedScanner
from fedsim_tf.shape.shape_op import ShapeRenderer
from fedsim_tf.shape.ssm import default_ssm

# Reference table (shared/reference/heart-data-materials.md), 70 keV: mu in /cm and HU.
MU_WATER, MU_AIR, MU_MYOCARDIUM, MU_BLOOD_10MG = 0.1929, 0.0002, 0.2011, 0.254
HU_BLOOD_10MG, HU_MYOCARDIUM = 316.0, 43.0


def _hu(ct: np.ndarray) -> np.ndarray:
    """The simulator's [-1, 1] scale back to HU by the window's definition: -1 = -200 HU, 1 = 800 HU."""
    return (ct + 1.0) * 500.0 - 200.0


def test_geometry_covers_the_volume():
    scanner = SimulatedScanner(views=12, source_isocenter_mm=750.0, source_detector_mm=1200.0)
    geometry = cone_geometry((8, 8, 8), (20.0, 20.0, 20.0), scanner)
    # Half-diagonal r = 0.5 * sqrt(3) * 160 = 138.56 mm; tangent cone on the detector:
    # 1200 * r / sqrt(750^2 - r^2) = 226.3 mm; pixel = 20 * 1.6 = 32 mm -> 2 * ceil(7.07) = 16 pixels.
    assert geometry.detector_shape == (16, 16)
    assert np.allclose(geometry.detector_spacing, [32.0, 32.0])
    assert geometry.projection_matrices.shape == (12, 3, 4)
    assert geometry.angular_range == pytest.approx(2 * math.pi)


def test_water_cylinder_with_a_blood_ball_comes_back_at_the_table_hounsfield_units():
    # 32^3 grid of 5 mm voxels, 64 views: a water cylinder (radius 72 mm, 144 mm long) in air with a
    # ball of enhanced blood (10 mg I/mL: 0.254 /cm = 316 HU) of radius 27 mm at the centre.
    n, spacing = 32, 5.0
    z, y, x = (np.mgrid[:n, :n, :n] - (n - 1) / 2) * spacing
    radius, axial = np.sqrt(x**2 + y**2 + z**2), np.sqrt(x**2 + y**2)
    body = (axial < 72.0) & (np.abs(z) < 72.0)
    ball = radius < 27.0
    mu = np.where(ball, MU_BLOOD_10MG, np.where(body, MU_WATER, MU_AIR)).astype(np.float32)
    hu = _hu(ConeBeamCT((n,) * 3, (spacing,) * 3, SimulatedScanner(views=64))(mu[None]).numpy()[0])
    blood = radius < 27.0 - 1.5 * spacing  # voxels at least 1.5 voxels inside each region
    water = (radius > 27.0 + 1.5 * spacing) & (axial < 72.0 - 1.5 * spacing) & (np.abs(z) < 32.0)
    air = (axial > 72.0 + 2 * spacing) & (np.abs(z) < 32.0)
    assert blood.sum() > 200 and water.sum() > 2000 and air.sum() > 500
    assert abs(float(hu[blood].mean()) - HU_BLOOD_10MG) < 30.0
    assert abs(float(hu[water].mean()) - 0.0) < 30.0
    # Every central voxel, not only the means (ray-sampling and 64-view streaks: measured within 50 HU).
    assert np.all(np.abs(hu[blood] - HU_BLOOD_10MG) < 80.0) and np.all(np.abs(hu[water]) < 80.0)
    # Air (-1000 HU) lies below the window: the lowest value of the scale.
    assert np.allclose(hu[air], -200.0, atol=1e-3)


def test_straight_through_clip_passes_gradients_outside_the_window():
    x = tf.Variable([-3.0, 0.0, 2.0])
    with tf.GradientTape() as tape:
        y = hu_to_normalised(x * 1000.0)
    assert np.allclose(y.numpy(), [-1.0, -0.6, 1.0])
    assert np.allclose(tape.gradient(y, x).numpy(), [2.0, 2.0, 2.0])


def test_fix_mat_attenuation_follows_the_material_table():
    labels = np.array([[0, 1, 2, 3, 4, 5, 6, 7]])
    mu = fix_mat_attenuation(labels, SimulatedScanner(iodine_mg_ml=10.0)).numpy()[0]
    assert mu[0] == pytest.approx(MU_WATER, rel=2e-3)
    assert mu[1] == pytest.approx(MU_MYOCARDIUM, rel=2e-3)
    assert np.allclose(mu[2:], MU_BLOOD_10MG, rtol=2e-3)  # enhanced blood (about 316 HU)


def test_fix_mat_mode_renders_each_structure_at_its_table_value():
    # The default SSM's mean heart on a 48^3 grid of 3.3 mm voxels, 64 views; background is water.
    simulator = CTSimulator(ShapeRenderer(default_ssm(), Grid.centred(48, 160.0)), (8, 8, 8), (20.0,) * 3,
                            SimulatedScanner(views=64), mode="fixmat")
    out = simulator(np.zeros((1, 21), np.float32))
    labels, hu = out.labels.numpy()[0], _hu(out.ct.numpy()[0])
    assert hu.shape == (48, 48, 48)
    inside = {  # voxels at least one voxel inside a region (FDK blurs the edges)
        "blood": ndimage.binary_erosion(np.isin(labels, [3, 5])),  # LV and RV blood pools
        "myocardium": ndimage.binary_erosion(labels == 1),
        "water": ndimage.binary_erosion(labels == 0, iterations=2),
    }
    inside["water"][:12] = inside["water"][-12:] = False  # away from the cone-beam-limited end slices
    assert min(mask.sum() for mask in inside.values()) > 100
    assert abs(float(np.median(hu[inside["blood"]])) - HU_BLOOD_10MG) < 30.0
    assert abs(float(np.median(hu[inside["myocardium"]])) - HU_MYOCARDIUM) < 30.0
    assert abs(float(np.median(hu[inside["water"]])) - 0.0) < 30.0
