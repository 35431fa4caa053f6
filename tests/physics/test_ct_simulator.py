"""CT simulator: equals a direct pyronn_ops projection + FDK + the HU conversion; Fix-Mat contrast."""

import math

import numpy as np
import pytest
import tensorflow as tf

import pyronn_ops
from pyronn_ops.fdk import fdk_reconstruction

from fedsim_tf.physics.ct_simulator import (
    ConeBeamCT,
    CTSimulator,
    ScannerSettings,
    cone_geometry,
    fix_mat_attenuation,
    hu_to_normalised,
)
from fedsim_tf.shape.shape_op import ShapeRenderer
from fedsim_tf.shape.ssm import default_ssm
from fedsim_tf.grid import Grid

MU_WATER, MU_AIR = 0.1929, 0.0002  # /cm at 70 keV (reference table)


def test_geometry_covers_the_volume():
    scanner = ScannerSettings(views=12, source_isocenter_mm=750.0, source_detector_mm=1200.0)
    geometry = cone_geometry((8, 8, 8), (20.0, 20.0, 20.0), scanner)
    # Half-diagonal r = 0.5 * sqrt(3) * 160 = 138.56 mm; tangent cone on the detector:
    # 1200 * r / sqrt(750^2 - r^2) = 226.3 mm; pixel = 20 * 1.6 = 32 mm -> 2 * ceil(7.07) = 16 pixels.
    assert geometry.detector_shape == (16, 16)
    assert np.allclose(geometry.detector_spacing, [32.0, 32.0])
    assert geometry.projection_matrices.shape == (12, 3, 4)
    assert geometry.angular_range == pytest.approx(2 * math.pi)


def test_cone_beam_ct_equals_a_direct_pyronn_ops_call():
    scanner = ScannerSettings(views=8)
    layer = ConeBeamCT((8, 8, 8), (20.0, 20.0, 20.0), scanner)
    rng = np.random.default_rng(0)
    mu = (MU_WATER + rng.uniform(-0.03, 0.06, (2, 8, 8, 8))).astype(np.float32)
    got = layer(mu).numpy()
    geometry = cone_geometry((8, 8, 8), (20.0, 20.0, 20.0), scanner)
    rec_per_mm = fdk_reconstruction(pyronn_ops.cone_projection3d(mu * 0.1, geometry), geometry, filter="ram_lak")
    hu = 1000.0 * (rec_per_mm.numpy() * 10.0 - MU_WATER) / (MU_WATER - MU_AIR)
    expected = np.clip((hu + 200.0) / 500.0 - 1.0, -1.0, 1.0)
    np.testing.assert_allclose(got, expected, atol=2e-4)


def test_blood_ball_in_water_comes_back_at_its_hounsfield_units():
    # 16^3 coarse grid of 10 mm voxels, 32 views (the demo scanner): a 60 mm radius ball of
    # enhanced blood (0.254 /cm = 316 HU) in water (0 HU).
    z, y, x = np.mgrid[:16, :16, :16] - 7.5
    ball = np.sqrt(x**2 + y**2 + z**2) < 6.0
    mu = np.where(ball, 0.254, MU_WATER).astype(np.float32)[None]
    hu = (ConeBeamCT((16, 16, 16), (10.0,) * 3, ScannerSettings(views=32))(mu).numpy()[0] + 1.0) * 500.0 - 200.0
    inner = np.sqrt(x**2 + y**2 + z**2) < 3.5
    assert abs(float(np.mean(hu[inner])) - 316.0) < 40.0


def test_straight_through_clip_passes_gradients_outside_the_window():
    x = tf.Variable([-3.0, 0.0, 2.0])
    with tf.GradientTape() as tape:
        y = hu_to_normalised(x * 1000.0)
    assert np.allclose(y.numpy(), [-1.0, -0.6, 1.0])
    assert np.allclose(tape.gradient(y, x).numpy(), [2.0, 2.0, 2.0])


def test_fix_mat_attenuation_follows_the_material_table():
    labels = np.array([[0, 1, 2, 3, 4, 5, 6, 7]])
    mu = fix_mat_attenuation(labels, ScannerSettings(iodine_mg_ml=10.0)).numpy()[0]
    assert mu[0] == pytest.approx(MU_WATER, rel=1e-5)
    assert mu[1] == pytest.approx(0.2011, rel=1e-5)  # myocardium
    assert np.allclose(mu[2:], 0.2037 + 10e-3 * 5.02, rtol=1e-5)  # enhanced blood (about 316 HU)


def test_fix_mat_mode_renders_blood_brighter_than_myocardium():
    ssm = default_ssm()
    grid = Grid.centred(32, 160.0)
    simulator = CTSimulator(ShapeRenderer(ssm, grid), (8, 8, 8), (20.0,) * 3, ScannerSettings(views=32),
                            mode="fixmat")
    out = simulator(np.zeros((1, 21), np.float32))
    labels, ct = out.labels.numpy()[0], out.ct.numpy()[0]
    assert ct.shape == (32, 32, 32)
    hu = (ct + 1.0) * 500.0 - 200.0
    blood = np.median(hu[np.isin(labels, [3, 5])])  # LV and RV blood pools
    myocardium = np.median(hu[labels == 1])
    background = np.median(hu[labels == 0][:100])
    # Table: enhanced blood 316 HU, myocardium 43 HU; FDK on 5 mm voxels blurs, so compare loosely.
    assert blood > myocardium + 100.0
    assert 150.0 < blood < 450.0
    assert -150.0 < myocardium < 200.0 and background < 150.0
