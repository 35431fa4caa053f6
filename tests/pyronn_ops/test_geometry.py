"""GeometryCone3D: derived attributes against hand-computed values, validation, config round trip."""

import math

import numpy as np
import pytest

from pyronn_ops import GeometryCone3D, circular_trajectory_3d


def make(**overrides):
    arguments = dict(
        volume_shape=(8, 10, 12),
        volume_spacing=(0.5, 1.0, 2.0),
        detector_shape=(20, 30),
        detector_spacing=(1.5, 2.5),
        number_of_projections=12,
        angular_range=2 * math.pi,
        source_detector_distance=1200.0,
        source_isocenter_distance=750.0,
    )
    arguments.update(overrides)
    return GeometryCone3D(**arguments)


def test_derived_attributes_match_hand_computed_values():
    g = make()
    np.testing.assert_allclose(g.volume_origin, [-1.75, -4.5, -11.0])  # -(n-1)/2 * spacing
    np.testing.assert_allclose(g.detector_origin, [-14.25, -36.25])
    assert g.sinogram_shape == (12, 20, 30)
    assert g.fan_angle == pytest.approx(math.atan(14.5 * 2.5 / 1200.0))
    assert g.cone_angle == pytest.approx(math.atan(9.5 * 1.5 / 1200.0))
    assert g.projection_multiplier == pytest.approx(750.0 * 1200.0 * 2.5 * math.pi / 12)
    assert g.step_size == 1.0
    np.testing.assert_allclose(g.angles, np.arange(12) * math.pi / 6)


def test_angular_start_end():
    g = make(number_of_projections=4, angular_range=[0.5, 2.5])
    np.testing.assert_allclose(g.angles, [0.5, 1.0, 1.5, 2.0])
    assert g.angular_range == pytest.approx(2.0)


@pytest.mark.parametrize(
    "name, value",
    [
        ("volume_shape", (8, 0, 12)),
        ("volume_shape", (8, 10)),
        ("volume_spacing", (0.5, -1.0, 2.0)),
        ("detector_shape", (20, 3.5)),
        ("detector_spacing", (1.5, float("nan"))),
        ("number_of_projections", 0),
        ("source_detector_distance", float("inf")),
        ("source_isocenter_distance", 1200.0),
        ("angular_range", 0.0),
        ("angular_range", [1.0, float("nan")]),
    ],
)
def test_invalid_values_name_the_parameter(name, value):
    with pytest.raises(ValueError, match=name):
        make(**{name: value})


def test_set_trajectory_validates_and_keeps_float64():
    g = make(number_of_projections=3)
    with pytest.raises(ValueError, match="projection_matrices"):
        g.require_trajectory()
    with pytest.raises(ValueError, match="shape"):
        g.set_trajectory(np.zeros((2, 3, 4)))
    bad = circular_trajectory_3d(g, dtype=np.float64)
    bad[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        g.set_trajectory(bad)
    singular = circular_trajectory_3d(g, dtype=np.float64)
    singular[0, :, :3] = 0.0
    with pytest.raises(ValueError, match="invertible"):
        g.set_trajectory(singular)
    matrices = circular_trajectory_3d(g, dtype=np.float64)
    g.set_trajectory(matrices)
    assert g.projection_matrices.dtype == np.float32 and g.projection_matrices.shape == (3, 3, 4)
    np.testing.assert_array_equal(g.projection_matrices_float64, matrices)


def test_config_round_trip():
    g = make(number_of_projections=5, angular_range=[0.2, 3.0], volume_origin=(1.0, 2.0, 3.0))
    g.set_trajectory(circular_trajectory_3d(g, dtype=np.float64))
    restored = GeometryCone3D.from_config(g.to_config())
    for attribute in ("volume_shape", "detector_shape", "sinogram_shape", "number_of_projections"):
        assert getattr(restored, attribute) == getattr(g, attribute)
    for attribute in ("volume_spacing", "volume_origin", "detector_spacing", "angles", "projection_matrices_float64"):
        np.testing.assert_array_equal(getattr(restored, attribute), getattr(g, attribute))
    assert restored.projection_multiplier == g.projection_multiplier
