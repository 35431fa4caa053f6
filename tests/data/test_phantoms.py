"""Phantom hospitals, --small preset with one volume per site (4 noisy + 3 noise-free simulations,
about 40 s)."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
import trimesh
from scipy import ndimage

from fedsim_tf.anatomy import MMWHS_CODE_TO_INDEX, NAME_TO_INDEX
from fedsim_tf.data import phantoms
from fedsim_tf.data.phantom_anatomy import chest_materials, torso_for_heart
from fedsim_tf.data.scanners import SITE_NAMES, SITES, site_settings
from fedsim_tf.grid import Grid
from fedsim_tf.physics.materials import Material

SEED = 0
CASE = 1001
DEPTH_MM = 10.0
"""Blood voxels at least this far inside the blood pools form the interior region."""


def _small(site: str):
    return phantoms.small_settings(site_settings(site), 1)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantoms")
    folders = phantoms.ensure_phantom_hospitals(out, small=True, seed=SEED, volumes_per_site=1)
    return out, folders


@pytest.fixture(scope="module")
def noise_free():
    return {site: phantoms.simulate_case(_small(site), CASE, SEED, photons_per_pixel=float("inf")) for site in SITE_NAMES}


def _read(folder, kind):
    img = nib.load(str(folder / f"ct_train_{CASE}_{kind}.nii.gz"))
    return np.asarray(img.dataobj).transpose(2, 1, 0), img.affine


def _indices(codes: np.ndarray) -> np.ndarray:
    lut = np.zeros(max(MMWHS_CODE_TO_INDEX) + 1, dtype=np.uint8)
    for code, index in MMWHS_CODE_TO_INDEX.items():
        lut[code] = index
    return lut[codes]


def _blood_interior(labels: np.ndarray, spacing_zyx: np.ndarray) -> np.ndarray:
    blood = labels >= NAME_TO_INDEX["la"]  # indices 2..7 are blood pools and vessels
    return ndimage.distance_transform_edt(blood, sampling=spacing_zyx) >= DEPTH_MM


def test_sites_match_table_1_and_differ():
    assert [s.site for s in SITES] == ["CT20", "CT34LC", "CT34MC"]
    assert [s.split for s in SITES] == [(12, 4, 4), (20, 7, 7), (20, 7, 7)]
    assert sum(s.num_volumes for s in SITES) == 88
    for field in ("kvp", "window", "photons_per_pixel", "detector_blur_px", "output_spacing", "filtration_mm"):
        assert len({getattr(s, field) for s in SITES}) == 3, field
    assert [s.motion_mm > 0 for s in SITES].count(True) >= 1
    # the effective energy falls with the tube voltage (80 < 100 < 120 kVp)
    kev = {s.site: s.kev for s in SITES}
    assert kev["CT34LC"] < kev["CT34MC"] < kev["CT20"]


def test_layout_manifest_and_cache(small_set):
    out, folders = small_set
    assert [f.name for f in folders] == list(SITE_NAMES)
    manifest = json.loads((out / phantoms.MANIFEST_NAME).read_text())
    assert manifest["seed"] == SEED and manifest["small"] is True and manifest["version"] == phantoms.PHANTOM_VERSION == 2
    for folder in folders:
        names = sorted(os.listdir(folder))
        assert names == ["ct_train_1001_image.nii.gz", "ct_train_1001_label.nii.gz", "scanner.json"]
        scanner = json.loads((folder / "scanner.json").read_text())
        assert scanner["site"] == folder.name and scanner["kvp"] == site_settings(folder.name).kvp
    assert not [p for p in os.listdir(out) if p.startswith(".")]
    stamp = (folders[0] / "ct_train_1001_image.nii.gz").stat().st_mtime_ns
    assert phantoms.ensure_phantom_hospitals(out, small=True, seed=SEED, volumes_per_site=1) == folders
    assert (folders[0] / "ct_train_1001_image.nii.gz").stat().st_mtime_ns == stamp


def test_labels_agree_with_the_heart_geometry(small_set):
    _, folders = small_set
    for folder in folders:
        settings = _small(folder.name)
        codes, affine = _read(folder, "label")
        _, image_affine = _read(folder, "image")
        assert set(np.unique(codes)) <= {0, *MMWHS_CODE_TO_INDEX}
        labels = _indices(codes)
        # Affine: spacing fov/64 along x, y, z, grid centred on the isocentre.
        np.testing.assert_allclose(np.diag(affine)[:3], np.array(settings.fov_mm[::-1]) / 64)
        np.testing.assert_allclose(affine[:3, :3] @ [31.5, 31.5, 31.5] + affine[:3, 3], 0, atol=1e-6)
        np.testing.assert_allclose(image_affine, affine)
        # LV blood pool: voxel volume and centroid against the closed mesh (trimesh's signed volume
        # and volume centroid); the pool has the highest label precedence, so only voxelisation differs.
        mesh = phantoms.case_heart(settings, CASE, SEED).heart.mesh.structures[NAME_TO_INDEX["lv"] - 1]
        tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
        voxel_ml = float(np.prod(settings.output_spacing)) / 1000.0
        lv = labels == NAME_TO_INDEX["lv"]
        assert lv.sum() * voxel_ml == pytest.approx(tm.volume / 1000.0, rel=0.12)
        centroid = Grid(labels.shape, affine).index_to_world(np.argwhere(lv)[:, ::-1].mean(axis=0))
        np.testing.assert_allclose(centroid, tm.center_mass, atol=max(settings.output_spacing))
        # Anatomical placement: LV blood pool left (-x), anterior (+y), inferior (-z) of the LA.
        lv_c = np.argwhere(lv).mean(axis=0)  # (z, y, x) indices
        la_c = np.argwhere(labels == NAME_TO_INDEX["la"]).mean(axis=0)
        assert lv_c[2] < la_c[2] and lv_c[1] > la_c[1] and lv_c[0] < la_c[0]


def test_intensities_are_realistic_and_not_a_material_atlas(noise_free):
    for site, case in noise_free.items():
        settings = _small(site)
        labels, image = case.labels, case.image_hu
        interior = _blood_interior(labels, np.array(settings.output_spacing))
        myo = ndimage.binary_erosion(labels == NAME_TO_INDEX["lv_myo"])
        blood, muscle = float(image[interior].mean()), float(image[myo].mean())
        print(f"{site}: noise-free blood {blood:.0f} HU, myocardium {muscle:.0f} HU")
        # cardiac CTA: enhanced blood 250-450 HU, myocardium 80-150 HU (reference table); the
        # phantoms' beam hardening and partial volume widen this by ~60 HU at either end
        assert 200 <= blood <= 500 and 40 <= muscle <= 180
        # Not Fix-Mat: one label, many intensities (papillary muscles, trabeculae, mixing, layering)
        lv = ndimage.binary_erosion(labels == NAME_TO_INDEX["lv"])
        assert np.std(image[lv]) > 20.0
        # the RA mixes dense and unopacified inflow: its spread exceeds the aorta's
        ra, aorta = (ndimage.binary_erosion(labels == NAME_TO_INDEX[n]) for n in ("ra", "aorta"))
        assert np.std(image[ra]) > np.std(image[aorta])
        # bright unlabelled vessels (great vessels, pulmonary vessels, coronaries) outside the labels
        outside = (labels == 0) & ~ndimage.binary_dilation(labels > 0, iterations=2)
        assert np.sum(outside & (image > blood - 100)) > 50


def test_ventricle_labels_hold_muscle():
    # The LV and RV cavity labels include papillary muscles and trabeculae (myocardium material),
    # as annotators draw them, so label edges and intensity edges differ.
    settings = _small("CT20")
    draw = phantoms.case_heart(settings, CASE, SEED)
    labels, patient, _ = phantoms.build_patient(settings, draw, np.random.default_rng(0))
    for name in ("lv", "rv"):
        cavity = labels == NAME_TO_INDEX[name]
        share = float(np.mean(patient.material[cavity] == Material.MYOCARDIUM))
        print(f"{name}: {share:.1%} of the cavity label is muscle")
        assert 0.02 < share < 0.4


def test_noise_per_site(small_set, noise_free):
    _, folders = small_set
    noise = {}
    for folder in folders:
        image, _ = _read(folder, "image")
        labels = noise_free[folder.name].labels
        interior = _blood_interior(labels, np.array(_small(folder.name).output_spacing))
        assert interior.sum() > 100
        noise[folder.name] = float(np.std(image[interior] - noise_free[folder.name].image_hu[interior]))
    print(f"noise std (HU): {noise}")
    # adult high-dose site quietest, low-dose paediatric site with a sharp kernel noisiest
    assert 1.15 * noise["CT20"] < noise["CT34MC"] and 1.15 * noise["CT34MC"] < noise["CT34LC"]
    assert all(5.0 < n < 150.0 for n in noise.values())


def test_deterministic_by_seed(small_set):
    _, folders = small_set
    settings = _small("CT20")
    again = phantoms.simulate_case(settings, CASE, SEED)
    written, _ = _read(folders[0], "image")
    np.testing.assert_array_equal(np.clip(np.rint(again.image_hu), -1024, 3071).astype(np.int16), written)
    other = phantoms.case_heart(settings, CASE, SEED + 1).heart.mesh.stacked_vertices()
    assert not np.allclose(other, phantoms.case_heart(settings, CASE, SEED).heart.mesh.stacked_vertices())


def test_chest_anatomy():
    settings = site_settings("CT20")
    draw = phantoms.case_heart(settings, CASE, SEED)
    vertices = draw.heart.mesh.stacked_vertices()
    torso = torso_for_heart(np.stack([vertices.min(0), vertices.max(0)]), draw.body_scale, np.random.default_rng(0))
    grid = Grid.centred((40, 100, 100), (200.0, 400.0, 400.0))
    mat, cancellous = chest_materials(grid, torso)
    xyz = grid.voxel_centres()
    cx, cy = torso.body_centre
    lung = mat[20] == Material.LUNG
    # Lungs on both sides of the body axis, bone behind the heart (spine), air outside the body.
    assert np.any(lung & (xyz[20, ..., 0] > cx + 60)) and np.any(lung & (xyz[20, ..., 0] < cx - 60))
    bone = mat == Material.CORTICAL_BONE
    spine = bone & (np.abs(xyz[..., 0] - cx) < 20) & (xyz[..., 1] < vertices[:, 1].min())
    assert spine.sum() > 50
    assert mat[0, 0, 0] == Material.AIR
    # Bones have a marrow core inside a cortex: cancellous voxels are bone voxels, never all of them.
    assert cancellous.any() and np.all(bone[cancellous]) and (bone & ~cancellous).any()
    # Descending aorta: enhanced blood left of the body axis and behind the heart's centre.
    aorta = np.argwhere(mat == Material.ENHANCED_BLOOD)
    centre = grid.index_to_world(aorta[:, ::-1].mean(axis=0))
    assert centre[0] < cx and centre[1] < cy


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(phantoms, "simulate_case", fail)
    with pytest.raises(RuntimeError, match="interrupted"):
        phantoms.ensure_phantom_hospitals(tmp_path, small=True, sites=["CT20"], volumes_per_site=1)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "kwargs, match",
    [({"sites": ["CT99"]}, "unknown phantom site"), ({"workers": 0}, "workers"),
     ({"volumes_per_site": 3}, "volumes_per_site")],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        phantoms.ensure_phantom_hospitals(tmp_path, **kwargs)
