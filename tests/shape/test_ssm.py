"""Statistical shape model: GPA + PCA against independent references, I/O, default model."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from fedsim_tf.shape.ssm import (
    SSMFileError,
    StatisticalShapeModel,
    default_ssm,
    default_ssm_path,
)
from fedsim_tf.shape.template import sample_population


@pytest.fixture(scope="module")
def hearts() -> list:
    return sample_population(4, "adult", seed=11) + sample_population(4, "chd_lc", seed=12)


@pytest.fixture(scope="module")
def full_model(hearts: list) -> StatisticalShapeModel:
    return StatisticalShapeModel.fit(hearts, n_modes=len(hearts) - 1)


def _reference_gpa_pca(shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Independent float64 reference: GPA with scipy's rotation fit, PCA by Gram eigh.

    Returns variances (descending) and the ``(N-1, 3V)`` principal directions.
    """
    size = np.mean([np.sqrt(((s - s.mean(0)) ** 2).sum()) for s in shapes])
    norm = np.stack([(s - s.mean(0)) * size / np.sqrt(((s - s.mean(0)) ** 2).sum()) for s in shapes])
    mean = norm[0]
    for _ in range(500):
        aligned = np.stack([Rotation.align_vectors(mean, s)[0].apply(s) for s in norm])
        new = aligned.mean(0)
        if np.abs(new - mean).max() < 1e-13:
            break
        mean = new
    flat = aligned.reshape(len(shapes), -1)
    centred = flat - flat.mean(0)
    evals, evecs = np.linalg.eigh(centred @ centred.T / (len(shapes) - 1))
    order = np.argsort(evals)[::-1][: len(shapes) - 1]
    directions = (evecs[:, order].T @ centred) / np.sqrt(evals[order] * (len(shapes) - 1))[:, None]
    return evals[order], directions


def test_pca_matches_independent_reference(hearts: list, full_model: StatisticalShapeModel) -> None:
    variances, directions = _reference_gpa_pca(np.stack([h.stacked_vertices() for h in hearts]))
    np.testing.assert_allclose(full_model.stddevs**2, variances, rtol=1e-6)
    overlap = np.abs(np.einsum("ij,ij->i", full_model.modes, directions))
    np.testing.assert_allclose(overlap, 1.0, atol=1e-6)  # same modes up to sign
    np.testing.assert_allclose(full_model.modes @ full_model.modes.T, np.eye(len(hearts) - 1), atol=1e-10)
    assert full_model.explained_variance_ratio.sum() == pytest.approx(1.0, abs=1e-9)


def test_instance_zero_is_mean_and_batch_matches(full_model: StatisticalShapeModel) -> None:
    mean = full_model.mean.stacked_vertices()
    np.testing.assert_array_equal(full_model.instance(np.zeros(full_model.n_modes)).stacked_vertices(), mean)
    np.testing.assert_allclose(mean.mean(0), 0.0, atol=1e-9)
    w = np.random.default_rng(0).normal(size=(5, full_model.n_modes))
    batch = full_model.instance_vertices(w)
    assert batch.shape == (5, len(mean), 3)
    for k in range(5):
        # Hand formula: mean + sum_k w_k std_k mode_k.
        expected = mean.reshape(-1) + sum(w[k, j] * full_model.stddevs[j] * full_model.modes[j] for j in range(w.shape[1]))
        np.testing.assert_allclose(batch[k].reshape(-1), expected, atol=1e-9)
    # A 1-std step along mode k moves the flattened shape by exactly stddevs[k] (mm, L2 norm).
    step = full_model.instance_vertices(np.eye(full_model.n_modes)[:1])[0] - mean
    assert np.linalg.norm(step) == pytest.approx(full_model.stddevs[0], rel=1e-12)
    with pytest.raises(ValueError, match="weights"):
        full_model.instance_vertices(np.zeros((2, full_model.n_modes + 1)))


def test_all_modes_reproduce_training_shapes(hearts: list, full_model: StatisticalShapeModel) -> None:
    for heart in hearts:
        weights, transform = full_model.project(heart)
        rebuilt = transform.inverse_apply(full_model.instance_vertices(weights))
        assert np.abs(rebuilt - heart.stacked_vertices()).max() < 0.01


def test_gpa_removes_similarity(hearts: list, full_model: StatisticalShapeModel) -> None:
    rng = np.random.default_rng(5)
    moved = []
    for h in hearts:
        rot = Rotation.from_rotvec(rng.normal(0, 0.4, 3)).as_matrix()
        scale, shift = rng.uniform(0.5, 2.0), rng.normal(0, 30, 3)
        moved.append(h.with_stacked_vertices(scale * h.stacked_vertices() @ rot.T + shift))
    other = StatisticalShapeModel.fit(moved, n_modes=len(hearts) - 1)
    # Sizes are normalised to the mean input centroid size, so stds scale with it.
    ratio = other.size / full_model.size
    np.testing.assert_allclose(other.stddevs, full_model.stddevs * ratio, rtol=1e-6)
    np.testing.assert_allclose(other.explained_variance_ratio, full_model.explained_variance_ratio, atol=1e-9)


def test_save_load_round_trip(tmp_path, full_model: StatisticalShapeModel) -> None:
    path = tmp_path / "sub" / "model.npz"
    full_model.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["model.npz"]  # no temp file left
    loaded = StatisticalShapeModel.load(path)
    np.testing.assert_array_equal(loaded.modes, full_model.modes)
    np.testing.assert_array_equal(loaded.stddevs, full_model.stddevs)
    np.testing.assert_array_equal(loaded.mean.stacked_vertices(), full_model.mean.stacked_vertices())
    for a, b in zip(loaded.mean.structures, full_model.mean.structures):
        np.testing.assert_array_equal(a.faces, b.faces)
    np.testing.assert_array_equal(loaded.explained_variance_ratio, full_model.explained_variance_ratio)


def test_bad_files_raise_clear_errors(tmp_path, full_model: StatisticalShapeModel) -> None:
    good = tmp_path / "good.npz"
    full_model.save(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip archive at all" * 10)
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    wrong_version = tmp_path / "v99.npz"
    np.savez(wrong_version, **{**arrays, "format_version": np.array(99)})
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    bad_shape = tmp_path / "bad_shape.npz"
    np.savez(bad_shape, **{**arrays, "modes": arrays["modes"][:, :-3]})
    cases = {truncated: "truncated or corrupt", garbage: "truncated or corrupt", wrong_version: "format version 99",
             foreign: "not a fedsim_tf shape model", bad_shape: "modes", tmp_path / "missing.npz": "no such"}
    for path, message in cases.items():
        with pytest.raises(SSMFileError, match=message) as info:
            StatisticalShapeModel.load(path)
        assert str(path) in str(info.value) and isinstance(info.value, ValueError)


def test_fit_rejects_bad_input(hearts: list) -> None:
    with pytest.raises(ValueError, match="n_modes"):
        StatisticalShapeModel.fit(hearts, n_modes=len(hearts))
    with pytest.raises(ValueError, match="at least 2"):
        StatisticalShapeModel.fit(hearts[:1], n_modes=1)
    odd = hearts[1].structures[0]
    broken = hearts[1].__class__((odd.__class__(odd.name, odd.vertices, odd.faces[:, ::-1]),) + hearts[1].structures[1:])
    with pytest.raises(ValueError, match=r"meshes\[1\]"):
        StatisticalShapeModel.fit([hearts[0], broken], n_modes=1)


def test_default_ssm_cached_and_explains_variance(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FEDSIM_CACHE_DIR", str(tmp_path))
    path = default_ssm_path()
    assert path.parent == tmp_path
    model = default_ssm()
    assert path.is_file() and default_ssm() is model
    loaded = StatisticalShapeModel.load(path)
    np.testing.assert_array_equal(loaded.modes, model.modes)
    assert model.n_modes == 14
    share = float(model.explained_variance_ratio.sum())
    print(f"default SSM: 14 modes explain {share:.3%} of the shape variance")
    # The population's variance comes mainly from ~15 large parameters (size-free chamber and
    # vessel factors, wall, tilts); the 56 small shape-detail coefficients add little.
    assert share > 0.95
    assert np.all(np.diff(model.stddevs) <= 0)
