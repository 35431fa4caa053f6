"""Phantom hospitals, --small preset with one volume per site (about 7 simulations in all)."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from fedsim_tf.anatomy import MMWHS_CODE_TO_INDEX, NAME_TO_INDEX
from fedsim_tf.data import phantoms
from fedsim_tf.data.phantom_anatomy import material_volume, torso_for_heart
from fedsim_tf.data.scanners import SITE_NAMES, SITES, site_settings
from fedsim_tf.grid import Grid
from fedsim_tf.physics.materials import Material, material_mu, mu_to_hu
from fedsim_tf.shape.voxelize import voxelize

SEED = 0
CASE = 1001
DEPTH_MM = 10.0
"""Blood voxels at least this far inside the blood pools form the homogeneous region."""


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


def _blood_interior(labels: np.ndarray, spacing_zyx: np.ndarray) -> np.ndarray:
    blood = labels >= NAME_TO_INDEX["la"]  # indices 2..7 are blood pools and vessels
    return ndimage.distance_transform_edt(blood, sampling=spacing_zyx) >= DEPTH_MM


def test_sites_match_table_1():
    assert [s.site for s in SITES] == ["CT20", "CT34LC", "CT34MC"]
    assert [s.split for s in SITES] == [(12, 4, 4), (20, 7, 7), (20, 7, 7)]
    assert sum(s.num_volumes for s in SITES) == 88
    # CT20 at 70 keV with 8-12 mg I/mL: 264-368 HU (reference table).
    lo, hi = site_settings("CT20").blood_hu_range
    assert lo == pytest.approx(264, abs=3) and hi == pytest.approx(368, abs=3)
    assert len({s.output_spacing for s in SITES}) == 3
    assert len({s.window for s in SITES}) == 3


def test_layout_manifest_and_cache(small_set):
    out, folders = small_set
    assert [f.name for f in folders] == list(SITE_NAMES)
    manifest = json.loads((out / phantoms.MANIFEST_NAME).read_text())
    assert manifest["seed"] == SEED and manifest["small"] is True and manifest["version"] == phantoms.PHANTOM_VERSION
    for folder in folders:
        names = sorted(os.listdir(folder))
        assert names == ["ct_train_1001_image.nii.gz", "ct_train_1001_label.nii.gz", "scanner.json"]
        scanner = json.loads((folder / "scanner.json").read_text())
        assert scanner["site"] == folder.name and scanner["kev"] == site_settings(folder.name).kev
    assert not [p for p in os.listdir(out) if p.startswith(".")]
    stamp = (folders[0] / "ct_train_1001_image.nii.gz").stat().st_mtime_ns
    assert phantoms.ensure_phantom_hospitals(out, small=True, seed=SEED, volumes_per_site=1) == folders
    assert (folders[0] / "ct_train_1001_image.nii.gz").stat().st_mtime_ns == stamp


def test_labels_are_the_voxelised_heart(small_set):
    _, folders = small_set
    for folder in folders:
        settings = _small(folder.name)
        codes, affine = _read(folder, "label")
        _, image_affine = _read(folder, "image")
        assert set(np.unique(codes)) <= {0, *MMWHS_CODE_TO_INDEX}
        lut = np.zeros(max(MMWHS_CODE_TO_INDEX) + 1, dtype=np.uint8)
        for code, index in MMWHS_CODE_TO_INDEX.items():
            lut[code] = index
        heart = phantoms.case_heart(settings, CASE, SEED)[0]
        grid = Grid.centred((64, 64, 64), settings.fov_mm)
        np.testing.assert_array_equal(lut[codes], voxelize(heart, grid))
        # Affine: spacing fov/64 along x, y, z, grid centred on the isocentre.
        np.testing.assert_allclose(np.diag(affine)[:3], np.array(settings.fov_mm[::-1]) / 64)
        np.testing.assert_allclose(affine[:3, :3] @ [31.5, 31.5, 31.5] + affine[:3, 3], 0, atol=1e-6)
        np.testing.assert_allclose(image_affine, affine)
        # Anatomical placement: LV blood pool left (-x), anterior (+y), inferior (-z) of the LA.
        lv = np.argwhere(lut[codes] == NAME_TO_INDEX["lv"]).mean(axis=0)  # (z, y, x) indices
        la = np.argwhere(lut[codes] == NAME_TO_INDEX["la"]).mean(axis=0)
        assert lv[2] < la[2] and lv[1] > la[1] and lv[0] < la[0]


def test_blood_hu_and_noise_per_site(small_set, noise_free):
    _, folders = small_set
    noise = {}
    for folder in folders:
        settings = _small(folder.name)
        image, _ = _read(folder, "image")
        labels = noise_free[folder.name].labels
        interior = _blood_interior(labels, np.array(settings.output_spacing))
        assert interior.sum() > 200
        blood = image[interior].astype(np.float64)
        lo, hi = settings.blood_hu_range
        assert lo - 20 <= blood.mean() <= hi + 20, (folder.name, blood.mean(), (lo, hi))
        noise[folder.name] = float(np.std(image[interior] - noise_free[folder.name].image_hu[interior]))
        myo = ndimage.binary_erosion(labels == NAME_TO_INDEX["lv_myo"])
        print(f"{folder.name}: blood {blood.mean():.0f} +- {blood.std():.0f} HU (range {lo:.0f}-{hi:.0f}), "
              f"myocardium {image[myo].mean():.0f} +- {image[myo].std():.0f} HU, noise std {noise[folder.name]:.1f} HU")
    assert noise["CT34MC"] * 1.3 < noise["CT20"] and noise["CT20"] * 1.3 < noise["CT34LC"]


def test_noise_free_hu_matches_material(noise_free):
    for site, case in noise_free.items():
        settings = _small(site)
        interior = _blood_interior(case.labels, np.array(settings.output_spacing))
        nominal = float(mu_to_hu(material_mu(Material.ENHANCED_BLOOD, settings.kev, case.iodine_mg_ml), settings.kev))
        measured = float(case.image_hu[interior].mean())
        print(f"{site}: noise-free blood {measured:.1f} HU, nominal {nominal:.1f} HU")
        assert abs(measured - nominal) <= 20


def test_deterministic_by_seed(small_set):
    _, folders = small_set
    settings = _small("CT20")
    again = phantoms.simulate_case(settings, CASE, SEED)
    written, _ = _read(folders[0], "image")
    np.testing.assert_array_equal(np.clip(np.rint(again.image_hu), -1024, 3071).astype(np.int16), written)
    other = phantoms.case_heart(settings, CASE, SEED + 1)[0]
    assert not np.allclose(other.stacked_vertices(), phantoms.case_heart(settings, CASE, SEED)[0].stacked_vertices())


def test_chest_anatomy():
    settings = site_settings("CT20")
    heart, scale, _ = phantoms.case_heart(settings, CASE, SEED)
    vertices = heart.stacked_vertices()
    torso = torso_for_heart(np.stack([vertices.min(0), vertices.max(0)]), scale, np.random.default_rng(0))
    grid = Grid.centred((40, 100, 100), (200.0, 400.0, 400.0))
    mat = material_volume(grid, torso)
    xyz = grid.voxel_centres()
    cx, cy = torso.body_centre
    mid = mat[20]
    lung = mid == Material.LUNG
    # Lungs on both sides of the body axis, bone behind the heart (spine), air outside the body.
    assert np.any(lung & (xyz[20, ..., 0] > cx + 60)) and np.any(lung & (xyz[20, ..., 0] < cx - 60))
    bone = mat == Material.CORTICAL_BONE
    spine = bone & (np.abs(xyz[..., 0] - cx) < 20) & (xyz[..., 1] < vertices[:, 1].min())
    assert spine.sum() > 50
    assert mat[0, 0, 0] == Material.AIR
    # Descending aorta: enhanced blood left of the body axis and behind the heart's centre.
    aorta = np.argwhere(mat == Material.ENHANCED_BLOOD)
    centre = grid.index_to_world(aorta[:, ::-1].mean(axis=0))
    assert centre[0] < cx and centre[1] < cy


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(phantoms, "simulate_case", fail)
    with pytest.raises(RuntimeError):
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
