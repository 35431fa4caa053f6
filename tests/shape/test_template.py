"""Template anatomy, mesh validity and population sampler."""

from __future__ import annotations

import numpy as np
import pytest

from fedsim_tf.anatomy import STRUCTURE_NAMES
from fedsim_tf.shape.mesh import StructureMesh
from fedsim_tf.shape.template import (
    PRESETS,
    HeartShapeParameters,
    build_heart,
    sample_heart,
    sample_population,
    sample_parameters,
    template_heart,
)
from tests.shape.mesh_checks import assert_valid_surface, trimesh_of, volumes_ml


def test_template_meshes_are_closed_outward_and_simple() -> None:
    heart = template_heart()
    assert tuple(s.name for s in heart.structures) == STRUCTURE_NAMES
    for mesh in heart.structures:
        assert 500 <= len(mesh.vertices) <= 1500
        euler = len(mesh.vertices) - len(trimesh_of(mesh).edges_unique) + len(mesh.faces)
        assert euler == 2, mesh.name  # sphere topology
        assert_valid_surface(mesh)


def test_template_volumes_in_adult_ranges() -> None:
    vol = volumes_ml(template_heart())
    assert 100 <= vol["lv"] <= 180
    assert 110 <= vol["rv"] <= 200
    assert 50 <= vol["la"] <= 90
    assert 50 <= vol["ra"] <= 100
    assert 90 <= vol["lv_myo"] - vol["lv"] <= 160
    heart = template_heart()
    extent = np.ptp(heart.stacked_vertices(), axis=0)
    assert np.all(extent < 150.0), extent
    np.testing.assert_allclose(heart.centre(), 0.0, atol=1e-9)


def _vessel_diameter(mesh: StructureMesh) -> float:
    """Mean diameter of the mid cross-section about the principal axis (mm)."""
    v = mesh.vertices - mesh.vertices.mean(0)
    axis = np.linalg.svd(v, full_matrices=False)[2][0]
    along = v @ axis
    mid = np.abs(along) < 4.0
    radial = v[mid] - np.outer(along[mid], axis)
    return 2.0 * float(np.linalg.norm(radial, axis=1).mean())


def test_template_anatomical_arrangement() -> None:
    heart = template_heart()
    m = {s.name: s for s in heart.structures}
    c = {n: s.vertices.mean(0) for n, s in m.items()}
    # Atria above (z) and behind (y) their ventricles; RA right of LA (x).
    assert c["la"][2] > c["lv"][2] + 15 and c["ra"][2] > c["rv"][2] + 15
    assert c["la"][1] < c["lv"][1] and c["ra"][1] < c["rv"][1]
    assert c["ra"][0] > c["la"][0] + 20
    # RV right-anterior of the LV.
    assert c["rv"][0] > c["lv"][0] and c["rv"][1] > c["lv"][1]
    # The epicardial surface contains every LV blood-pool vertex.
    assert trimesh_of(m["lv_myo"]).contains(m["lv"].vertices).all()
    # Long axis base -> apex points left, anterior, inferior.
    lv = m["lv"].vertices
    axis = np.linalg.svd(lv - lv.mean(0), full_matrices=False)[2][0]
    apex_side = lv[np.argmax(np.abs((lv - lv.mean(0)) @ axis))] - lv.mean(0)
    axis = axis * np.sign(axis @ apex_side)
    base_pool = lv[(lv - lv.mean(0)) @ axis < -20].mean(0)
    assert np.linalg.norm(lv[np.argmax(lv @ axis)] - c["lv"]) > np.linalg.norm(base_pool - c["lv"])
    assert axis[0] < -0.3 and axis[1] > 0.3 and axis[2] < -0.3, axis
    # Aorta leaves the LV base going up; PA leaves the RV in front of the aorta.
    ao, pa = m["aorta"].vertices, m["pa"].vertices
    assert ao[:, 2].max() > c["la"][2] + 20 and pa[:, 2].max() > c["rv"][2] + 50
    ao_root = ao[ao[:, 2] < ao[:, 2].min() + 8].mean(0)
    pa_root = pa[pa[:, 2] < pa[:, 2].min() + 8].mean(0)
    assert np.linalg.norm(ao_root - base_pool) < 45
    assert pa_root[1] > ao_root[1] + 10
    rv_top = m["rv"].vertices[m["rv"].vertices[:, 2] > m["rv"].vertices[:, 2].max() - 15].mean(0)
    assert np.linalg.norm(pa_root - rv_top) < 40
    assert 25 <= _vessel_diameter(m["aorta"]) <= 35
    assert 20 <= _vessel_diameter(m["pa"]) <= 30


def test_sampler_is_deterministic_and_varied() -> None:
    a = sample_population(3, "adult", seed=7)
    b = sample_population(3, "adult", seed=7)
    c = sample_population(3, "adult", seed=8)
    for ha, hb, hc in zip(a, b, c):
        np.testing.assert_array_equal(ha.stacked_vertices(), hb.stacked_vertices())
        assert np.abs(ha.stacked_vertices() - hc.stacked_vertices()).max() > 1.0
        for sa, st in zip(ha.structures, template_heart().structures):
            np.testing.assert_array_equal(sa.faces, st.faces)  # fixed topology
    assert np.abs(a[0].stacked_vertices() - a[1].stacked_vertices()).max() > 1.0


def test_adult_population_size_spread_and_volumes() -> None:
    # Adult ventricular volumes vary by 20-25 % (sd), i.e. about 8 % in linear size.
    rng = np.random.default_rng(1)
    sizes = np.array([sample_parameters(rng, "adult").size for _ in range(400)])
    assert sizes.std() == pytest.approx(0.08, abs=0.01) and sizes.mean() == pytest.approx(1.0, abs=0.015)
    assert sizes.min() >= 0.8 and sizes.max() <= 1.2
    hearts = sample_population(12, "adult", seed=3)
    vols = np.array([[v for v in volumes_ml(h).values()] for h in hearts])
    # adult ranges (CT/MR reference values, +-2.5 sd of the size spread): LV/RV 60-300 mL, atria 30-150 mL
    lo = {"lv": 60, "rv": 60, "la": 30, "ra": 30}
    hi = {"lv": 300, "rv": 300, "la": 150, "ra": 150}
    for name in lo:
        col = vols[:, STRUCTURE_NAMES.index(name)]
        assert lo[name] <= col.min() and col.max() <= hi[name], (name, col)
    lv = vols[:, STRUCTURE_NAMES.index("lv")]
    assert 0.12 < lv.std() / lv.mean() < 0.4  # volume spread of the 12 hearts
    for mesh in hearts[0].structures:
        assert_valid_surface(mesh)


def test_presets_differ() -> None:
    idx = {n: i for i, n in enumerate(STRUCTURE_NAMES)}
    stats = {}
    for preset in PRESETS:
        vols = np.array([list(volumes_ml(h).values()) for h in sample_population(16, preset, seed=5)])
        stats[preset] = vols
    total = {p: v.sum(1).mean() for p, v in stats.items()}
    assert total["chd_lc"] < 0.6 * total["adult"] and total["chd_mc"] < 0.6 * total["adult"]
    rv_lv = {p: np.median(v[:, idx["rv"]] / v[:, idx["lv"]]) for p, v in stats.items()}
    assert rv_lv["chd_lc"] > 1.5 * rv_lv["adult"] and rv_lv["adult"] > 1.5 * rv_lv["chd_mc"]
    ao_pa = {p: np.median(v[:, idx["aorta"]] / v[:, idx["pa"]]) for p, v in stats.items()}
    assert ao_pa["chd_mc"] > ao_pa["adult"] > ao_pa["chd_lc"]
    for mesh in sample_heart(np.random.default_rng(0), "chd_lc").structures:
        assert_valid_surface(mesh)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="preset"):
        sample_population(2, "martian")
    with pytest.raises(ValueError, match="n:"):
        sample_population(-1)
    with pytest.raises(ValueError, match="factors"):
        build_heart(HeartShapeParameters(lv=0.0))
    with pytest.raises(ValueError, match="bumps"):
        HeartShapeParameters(bumps=np.zeros(3))
