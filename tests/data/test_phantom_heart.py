"""Phantom hearts: a valid non-linear deformation outside the shape model's span (about 25 s)."""

import numpy as np
import pytest

from fedsim_tf.data import phantoms
from fedsim_tf.data.phantom_heart import (
    MAX_WARP_GRADIENT,
    apply_warp,
    draw_phantom_heart,
    random_warp,
    warp_jacobian_deviation,
)
from fedsim_tf.data.phantom_quality import ssm_fit_errors
from fedsim_tf.data.scanners import SITES
from fedsim_tf.shape.ssm import DEFAULT_SSM_RECIPE, default_ssm, default_ssm_training_hearts, procrustes_align
from fedsim_tf.shape.template import sample_population
from tests.shape.mesh_checks import assert_valid_surface


def test_warp_jacobian_matches_finite_differences_and_is_bounded():
    box = np.array([[-60.0, -60.0, -60.0], [60.0, 60.0, 60.0]])
    warp = random_warp(np.random.default_rng(3), 1.0, box)
    points = np.random.default_rng(4).uniform(-60, 60, (50, 3))
    h = 1e-4
    jacobian = np.stack([(apply_warp(points + h * e, warp) - apply_warp(points - h * e, warp)) / (2 * h)
                         for e in np.eye(3)], axis=-1)  # (P, 3, 3): d out_i / d x_j
    expected = np.linalg.norm(jacobian - np.eye(3), ord=2, axis=(1, 2))
    np.testing.assert_allclose(warp_jacobian_deviation(points, warp), expected, rtol=1e-6, atol=1e-9)
    lattice = np.stack(np.meshgrid(*[np.linspace(-80, 80, 16)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    assert warp_jacobian_deviation(lattice, warp).max() <= MAX_WARP_GRADIENT + 1e-9


@pytest.mark.parametrize("population", ["adult", "chd_lc", "chd_mc"])
def test_phantom_hearts_are_valid_and_deformed(population):
    heart = draw_phantom_heart(np.random.default_rng(7), population)
    for mesh in heart.mesh.structures:
        assert_valid_surface(mesh)
    moved = np.linalg.norm(heart.mesh.stacked_vertices() - heart.template.stacked_vertices()
                           + heart.template.stacked_vertices().mean(axis=0), axis=1)
    assert 0.5 * heart.size < np.sqrt(np.mean(moved**2)) < 10.0 * heart.size
    assert [lobe.label for lobe in heart.lobes] == [2, 4]  # left and right atrial appendages


def test_default_ssm_is_not_an_oracle(tmp_path):
    model = default_ssm(cache_dir=tmp_path)
    for settings in SITES:
        hearts = [phantoms.case_heart(settings, settings.first_case + n, 0).heart.mesh for n in range(4)]
        errors = ssm_fit_errors(model, hearts)
        family = ssm_fit_errors(model, sample_population(4, settings.population, seed=99))
        print(f"{settings.site}: SSM fit error {errors.round(2)} mm; unseen template-family hearts {family.round(2)} mm")
        assert errors.mean() >= 0.8
        assert errors.mean() > family.mean() + 0.3  # what the phantom deformation adds


def test_default_ssm_contains_no_phantom_heart():
    # compared within each population (the SSM's recipe draws adult, chd_lc and chd_mc hearts in turn)
    training = [h.stacked_vertices() for h in default_ssm_training_hearts()]
    counts = DEFAULT_SSM_RECIPE["population"]
    ends = np.cumsum(list(counts.values()))
    by_population = {name: training[end - count:end] for (name, count), end in zip(counts.items(), ends)}
    closest = np.inf
    for settings in SITES:
        references = [t - t.mean(axis=0) for t in by_population[settings.population]]
        for n in range(settings.num_volumes):
            template = phantoms.case_heart(settings, settings.first_case + n, 0).heart.template.stacked_vertices()
            for reference in references:
                aligned, _ = procrustes_align(template, reference, np.sqrt((reference**2).sum()))
                closest = min(closest, float(np.sqrt(np.mean(np.sum((aligned - reference) ** 2, axis=1)))))
    print(f"closest phantom heart (before deformation) to an SSM training heart: {closest:.2f} mm RMS")
    assert closest > 0.5  # a shared draw would be identical (0 mm)
