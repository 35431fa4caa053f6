"""Template anatomy, mesh validity and population sampler."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from fedsim_tf.anatomy import STRUCTURE_NAMES
from fedsim_tf.grid import Grid
from fedsim_tf.shape.mesh import HeartMesh, StructureMesh
from fedsim_tf.shape.template import (
    PRESETS,
    HeartShapeParameters,
    build_heart,
    sample_heart,
    sample_population,
    template_heart,
)
from fedsim_tf.shape.voxelize import voxelize_structure


def _tm(mesh: StructureMesh) -> trimesh.Trimesh:
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)


def _volumes_ml(heart: HeartMesh) -> dict[str, float]:
    return {s.name: _tm(s).volume / 1000.0 for s in heart.structures}


def _assert_valid_surface(mesh: StructureMesh) -> None:
    """Closed, outward, no degenerate or folded faces, signed volume == occupancy volume."""
    tm = _tm(mesh)
    assert tm.is_watertight and tm.is_winding_consistent, mesh.name
    assert tm.volume > 0, f"{mesh.name}: inward winding"
    assert tm.area_faces.min() > 1e-3, f"{mesh.name}: degenerate face"
    # Adjacent faces never fold back onto each other (a local self-intersection would).
    normals = tm.face_normals[tm.face_adjacency]
    assert np.einsum("ij,ij->i", normals[:, 0], normals[:, 1]).min() > 0.0, f"{mesh.name}: folded"
    # A self-intersecting surface has regions of winding number 2 or -1, so its signed volume
    # differs from the volume of the points it encloses (winding != 0), measured at 1 mm.
    lo, hi = mesh.vertices.min(0) - 2, mesh.vertices.max(0) + 2
    n = np.ceil(hi - lo).astype(int)
    grid = Grid.centred(tuple(n[::-1]), tuple(n[::-1].astype(float)), tuple((lo + hi) / 2))
    occupied_ml = voxelize_structure(mesh, grid).sum() / 1000.0
    assert occupied_ml == pytest.approx(tm.volume / 1000.0, rel=0.03), mesh.name


def test_template_meshes_are_closed_outward_and_simple() -> None:
    heart = template_heart()
    assert tuple(s.name for s in heart.structures) == STRUCTURE_NAMES
    for mesh in heart.structures:
        assert 500 <= len(mesh.vertices) <= 1500
        euler = len(mesh.vertices) - len(_tm(mesh).edges_unique) + len(mesh.faces)
        assert euler == 2, mesh.name  # sphere topology
        _assert_valid_surface(mesh)


def test_template_volumes_in_adult_ranges() -> None:
    vol = _volumes_ml(template_heart())
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
    assert _tm(m["lv_myo"]).contains(m["lv"].vertices).all()
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


def test_adult_population_volumes_and_validity() -> None:
    hearts = sample_population(12, "adult", seed=3)
    vols = np.array([[v for v in _volumes_ml(h).values()] for h in hearts])
    lo = {"lv": 90, "rv": 85, "la": 45, "ra": 45}
    hi = {"lv": 220, "rv": 200, "la": 100, "ra": 100}
    for name in lo:
        col = vols[:, STRUCTURE_NAMES.index(name)]
        assert lo[name] <= col.min() and col.max() <= hi[name], (name, col)
    for mesh in hearts[0].structures:
        _assert_valid_surface(mesh)


def test_presets_differ() -> None:
    idx = {n: i for i, n in enumerate(STRUCTURE_NAMES)}
    stats = {}
    for preset in PRESETS:
        vols = np.array([list(_volumes_ml(h).values()) for h in sample_population(16, preset, seed=5)])
        stats[preset] = vols
    total = {p: v.sum(1).mean() for p, v in stats.items()}
    assert total["chd_lc"] < 0.6 * total["adult"] and total["chd_mc"] < 0.6 * total["adult"]
    rv_lv = {p: np.median(v[:, idx["rv"]] / v[:, idx["lv"]]) for p, v in stats.items()}
    assert rv_lv["chd_lc"] > 1.5 * rv_lv["adult"] and rv_lv["adult"] > 1.5 * rv_lv["chd_mc"]
    ao_pa = {p: np.median(v[:, idx["aorta"]] / v[:, idx["pa"]]) for p, v in stats.items()}
    assert ao_pa["chd_mc"] > ao_pa["adult"] > ao_pa["chd_lc"]
    for mesh in sample_heart(np.random.default_rng(0), "chd_lc").structures:
        _assert_valid_surface(mesh)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="preset"):
        sample_population(2, "martian")
    with pytest.raises(ValueError, match="n:"):
        sample_population(-1)
    with pytest.raises(ValueError, match="factors"):
        build_heart(HeartShapeParameters(lv=0.0))
    with pytest.raises(ValueError, match="bumps"):
        HeartShapeParameters(bumps=np.zeros(3))
