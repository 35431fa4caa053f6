"""SSM from labelled volumes: marching cubes, CPD registration, fitting report."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from fedsim_tf.grid import Grid
from fedsim_tf.shape.fitting import fit_ssm_from_labels, register_template, structure_surfaces
from fedsim_tf.shape.registration import cpd_similarity, umeyama
from fedsim_tf.shape.template import sample_population, template_heart
from fedsim_tf.shape.voxelize import voxelize

FOV_MM = 160.0


def test_umeyama_and_grouped_cpd_recover_a_known_similarity() -> None:
    rng = np.random.default_rng(0)
    groups = [rng.normal(c, 10.0, (80, 3)) for c in ([0, 0, 0], [40, 0, 0], [0, 40, 10])]
    rot = Rotation.from_rotvec([0.2, -0.1, 0.15]).as_matrix()
    scale, shift = 1.3, np.array([5.0, -3.0, 8.0])
    targets = [scale * g @ rot.T + shift for g in groups]
    s, r, t = umeyama(np.concatenate(targets), np.concatenate(groups))
    assert s == pytest.approx(scale, rel=1e-12)
    np.testing.assert_allclose(r, rot, atol=1e-12)
    np.testing.assert_allclose(t, shift, atol=1e-10)
    # CPD without correspondences, shuffled targets, started from the identity.
    shuffled = [tg[rng.permutation(len(tg))] for tg in targets]
    s, r, t = cpd_similarity(shuffled, groups, (1.0, np.eye(3), np.zeros(3)), iterations=80, outlier_weight=0.0)
    assert s == pytest.approx(scale, rel=1e-3)
    np.testing.assert_allclose(r, rot, atol=2e-3)
    np.testing.assert_allclose(t, shift, atol=0.1)


def test_marching_cubes_surfaces_of_balls_on_a_flipped_grid() -> None:
    # Flipped x axis, anisotropic spacing; seven disjoint 9 mm balls on a ring, label k at angle k.
    affine = np.diag([-1.5, 1.0, 2.0, 1.0])
    affine[:3, 3] = [50.0, -40.0, -50.0]
    grid = Grid((50, 80, 70), affine)
    angles = 2 * np.pi * np.arange(7) / 7
    centres = np.stack([28 * np.cos(angles), 28 * np.sin(angles), np.full(7, 3.0)], axis=1)
    labels = np.zeros(grid.shape, dtype=np.uint8)
    xyz = grid.voxel_centres()
    for k, c in enumerate(centres):
        labels[np.linalg.norm(xyz - c, axis=-1) < 9.0] = k + 1
    surfaces = structure_surfaces(labels, grid)
    for k in range(1, 7):  # lv_myo (k = 0) is the union of labels 1 and 3, checked below
        verts, faces = surfaces[k]
        radii = np.linalg.norm(verts - centres[k], axis=1)
        assert abs(radii.mean() - 9.0) < 0.8 and radii.max() < 10.5, k
        tri = verts[faces]
        volume = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0
        assert volume == pytest.approx(4 / 3 * np.pi * 9.0**3, rel=0.1), k  # outward, mm^3
    myo_verts = surfaces[0][0]
    nearest = np.linalg.norm(myo_verts[:, None] - centres[[0, 2]][None], axis=-1).min(axis=1)
    assert abs(nearest.mean() - 9.0) < 0.8 and len(myo_verts) > 1.5 * len(surfaces[1][0])
    labels[labels == 2] = 0
    with pytest.raises(ValueError, match="structure 'la'"):
        structure_surfaces(labels, grid)


def test_registration_recovers_a_known_heart() -> None:
    heart = sample_population(1, "adult", seed=21)[0]
    grid = Grid.centred(64, FOV_MM)
    voxel = FOV_MM / 64
    surfaces = structure_surfaces(voxelize(heart, grid), grid)
    fitted = register_template(template_heart(), surfaces)
    # The sampled heart has the template topology: its vertices are the true correspondences.
    errors = np.linalg.norm(fitted.stacked_vertices() - heart.stacked_vertices(), axis=1)
    print(f"registration: mean vertex error {errors.mean():.2f} mm ({errors.mean() / voxel:.2f} voxel)")
    assert errors.mean() < 1.5 * voxel
    for f, t in zip(fitted.structures, heart.structures):
        assert np.linalg.norm(f.vertices - t.vertices, axis=1).mean() < 2.0 * voxel, f.name


def test_fit_ssm_from_labels_small() -> None:
    hearts = sample_population(3, "adult", seed=4)
    grid = Grid.centred(48, FOV_MM)
    voxel = FOV_MM / 48
    ssm, report = fit_ssm_from_labels([voxelize(h, grid) for h in hearts], [grid] * 3, n_modes=2)
    print(f"fit: surface distance {report.surface_distance_mm.round(2)} mm, LOO {report.loo_error_mm.round(2)} mm")
    assert ssm.n_modes == 2 and report.structure_distance_mm.shape == (3, 7)
    assert np.all(report.surface_distance_mm < 0.5 * voxel)
    assert np.all(report.structure_distance_mm < 1.5 * voxel)
    # LOO error: finite, above the (near-zero) in-sample error, below the spread of the shapes.
    assert np.all(np.isfinite(report.loo_error_mm)) and np.all(report.loo_error_mm > 0.05)
    assert np.all(report.loo_error_mm < 15.0)


def test_fit_rejects_bad_input() -> None:
    grid = Grid.centred(8, 80.0)
    labels = np.zeros(grid.shape, dtype=np.uint8)
    with pytest.raises(ValueError, match="grids"):
        fit_ssm_from_labels([labels] * 3, [grid] * 2)
    with pytest.raises(ValueError, match="n_modes"):
        fit_ssm_from_labels([labels] * 3, [grid] * 3, n_modes=3)
    with pytest.raises(ValueError, match=r"label_maps\[0\]: structure 'lv_myo'"):
        fit_ssm_from_labels([labels] * 3, [grid] * 3, n_modes=2)
    with pytest.raises(ValueError, match="shape"):
        structure_surfaces(np.zeros((4, 4, 4)), grid)


@pytest.mark.slow
def test_fit_ssm_from_labels_four_subjects_64() -> None:
    hearts = sample_population(4, "adult", seed=8)
    grids = [Grid.centred(64, FOV_MM)] * 4
    ssm, report = fit_ssm_from_labels([voxelize(h, g) for h, g in zip(hearts, grids)], grids, n_modes=3)
    voxel = np.array([g.spacing_zyx[0] for g in grids])
    print(f"fit: surface distance {report.surface_distance_mm.round(2)} mm, LOO {report.loo_error_mm.round(2)} mm")
    assert np.all(report.surface_distance_mm < 0.6 * voxel)
    assert np.all(np.isfinite(report.loo_error_mm)) and ssm.n_modes == 3
