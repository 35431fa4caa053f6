"""Pose ranges from training labels: the rotation-free pose of hearts rendered at known translations and
scales is recovered, and the ranges reach every training heart plus the margin."""

import numpy as np
import pytest

from fedsim_tf.grid import Grid
from fedsim_tf.shape.parameters import ShapeBounds
from fedsim_tf.shape.pose_bounds import data_bounds, fitted_poses
from fedsim_tf.shape.shape_op import ShapeRenderer
from fedsim_tf.shape.ssm import default_ssm

N_MODES = 14


@pytest.fixture(scope="module")
def rendered() -> tuple[Grid, np.ndarray, np.ndarray, np.ndarray]:
    """The SSM mean heart rendered on a 64^3 grid of 3 mm voxels (the largest heart fits) at three known poses."""
    ssm = default_ssm()
    grid = Grid.centred(64, 192.0, tuple(ssm.mean.centre()))
    translations = np.array([[0.0, 0.0, 0.0], [6.0, -4.5, 3.0], [-3.0, 9.0, -6.0]])
    log_scales = np.array([0.0, 0.2, -0.3])
    params = np.zeros((3, N_MODES + 7))
    params[:, N_MODES + 3 : N_MODES + 6] = translations
    params[:, N_MODES + 6] = log_scales
    return grid, ShapeRenderer(ssm, grid).labels(params) > 0, translations, log_scales


def test_fitted_poses_recover_the_rendering_pose(rendered) -> None:
    grid, masks, translations, log_scales = rendered
    fitted_t, fitted_s = fitted_poses(masks, grid, default_ssm())
    # Voxelisation on 3 mm voxels: volumes within about 2 %, centroids within a fraction of a voxel.
    np.testing.assert_allclose(fitted_s, log_scales, atol=0.01)
    np.testing.assert_allclose(fitted_t, translations, atol=1.0)


def test_data_bounds_reach_every_training_heart_plus_the_margin(rendered) -> None:
    grid, masks, _, _ = rendered
    margins = ShapeBounds(mode_limit=2.5, rotation_rad=0.2, translation_mm=5.0, log_scale=0.05)
    bounds = data_bounds(masks, grid, default_ssm(), margins)
    fitted_t, fitted_s = fitted_poses(masks, grid, default_ssm())
    assert bounds.log_scale_centre == pytest.approx(fitted_s.mean())
    assert bounds.log_scale == pytest.approx(np.abs(fitted_s - fitted_s.mean()).max() + 0.05)
    np.testing.assert_allclose(bounds.translation_centre_mm, fitted_t.mean(axis=0))
    assert bounds.translation_mm == pytest.approx(np.abs(fitted_t - fitted_t.mean(axis=0)).max() + 5.0)
    assert (bounds.mode_limit, bounds.rotation_rad) == (2.5, 0.2)
    # The true extremes (log-scale -0.3 and +0.2) lie inside the range: about -0.033 +- 0.32.
    lows = bounds.centres(N_MODES) - bounds.half_widths(N_MODES)
    highs = bounds.centres(N_MODES) + bounds.half_widths(N_MODES)
    assert lows[-1] < -0.3 and highs[-1] > 0.2


def test_empty_masks_are_refused(rendered) -> None:
    grid, masks, _, _ = rendered
    with pytest.raises(ValueError, match="non-empty masks"):
        fitted_poses(np.zeros_like(masks[:1]), grid, default_ssm())
