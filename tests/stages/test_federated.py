"""Stage ``federated`` on three tiny sites and 3 logical CPU devices (in subprocesses,
:mod:`tests.stages.federated_harness`), against eager single-device references: the server's update is
the mean of the sites' own gradients, a site's private state does not depend on another site's data, a
non-finite site is left out, only ``G_S``/``G_M`` are reduced, and a crashed run resumes to the weights
of an uninterrupted one. About 2 minutes (two subprocesses on 2 shared cores).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fedsim_tf.errors import UserInputError
from fedsim_tf.stages import federated, synthesize
from tests.stages.federated_harness import CRASH_ROUNDS, SGD_LR, SITES, config
from tests.stages.sites import write_site

ROOT = Path(__file__).resolve().parents[2]


def _harness(mode: str, root: Path) -> dict:
    out = root / f"{mode}.pkl"
    result = subprocess.run([sys.executable, "-m", "tests.stages.federated_harness", mode, str(out), str(root)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"},
                            capture_output=True, text=True, timeout=1200)
    if result.returncode != 0:
        pytest.fail(f"harness {mode} failed:\n{result.stderr[-6000:]}")
    with open(out, "rb") as file:
        return pickle.load(file)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sites A, B, C of 5 volumes each (3 training volumes per fold: 2 labelled, 1 unlabelled)."""
    folder = tmp_path_factory.mktemp("federated")
    for seed, name in enumerate(SITES, start=1):
        write_site(folder / name, 5, seed=seed)
    return folder


@pytest.fixture(scope="module")
def rounds(root: Path) -> dict:
    return _harness("rounds", root)


@pytest.fixture(scope="module")
def stage(root: Path) -> dict:
    return _harness("stage", root)


def _relative(value: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(value, np.float64) - expected) / max(np.linalg.norm(expected), 1e-30))


def _check_server_step(run: dict, gradients: list[list[np.ndarray]], lr: float = SGD_LR) -> None:
    """SGD at ``lr``: every shared variable moved by ``-lr`` times the mean of ``gradients``."""
    for k, (before, after) in enumerate(zip(run["before"], run["after"])):
        expected = -lr * np.mean([np.asarray(g[k], np.float64) for g in gradients], axis=0)
        moved = np.asarray(after, np.float64) - before
        assert _relative(moved, expected) <= 1e-5, f"shared variable {k}: moved {_relative(moved, expected):.2e} off"


def test_a_round_moves_g_s_and_g_m_by_the_mean_of_the_sites_eager_gradients(rounds: dict) -> None:
    run = rounds["clean"]
    assert run["round"]["count"] == 3 and run["round"]["used"] == [True, True, True]
    reference = rounds["reference"]
    # the three sites' gradients differ (so the mean is a real average) and reach G_S and G_M
    shape_variables = 6  # G_S: three dense layers
    for gradients in reference:
        assert sum(np.linalg.norm(g) for g in gradients[:shape_variables]) > 0
        assert sum(np.linalg.norm(g) for g in gradients[shape_variables:]) > 0
    assert _relative(reference[0][0], np.asarray(reference[1][0], np.float64)) > 1e-3
    _check_server_step(run, reference)


def test_only_g_s_and_g_m_are_shared_and_reduced(rounds: dict) -> None:
    assert rounds["shared_names"] == rounds["generator_names"]
    assert not any(rounds["private_mirrored"])
    # the round's only cross-replica reduction: one tensor per shared variable (the server step)
    reduced = Counter(shape for kind, shape in rounds["reduced"] if kind == "reduce")
    assert reduced == Counter(rounds["shared_shapes"])


def test_a_site_with_a_non_finite_loss_is_left_out_of_the_round(rounds: dict) -> None:
    run = rounds["nan"]
    assert run["round"]["finite"] == [True, False, True]
    assert run["round"]["used"] == [True, False, True] and run["round"]["count"] == 2
    assert np.isnan(run["round"]["losses"][1]["total"])
    for before_nan, before_clean in zip(run["before"], rounds["clean"]["before"]):
        np.testing.assert_array_equal(before_nan, before_clean)
    reference = rounds["reference"]
    _check_server_step(run, [reference[0], reference[2]])
    assert all(np.isfinite(value).all() for value in run["after"])


@pytest.mark.parametrize("kind", ["supervised", "unsupervised"])
def test_another_sites_data_leaves_a_sites_private_state_bit_identical(rounds: dict, kind: str) -> None:
    clean, noise = ((rounds["clean"], rounds["noise"]) if kind == "supervised" else
                    (rounds["clean_unsupervised"], rounds["noise_unsupervised"]))
    assert noise["round"]["count"] == 3
    for site in (0, 2):  # A and C: bit-identical
        for key, values in clean["private"][site].items():
            for a, b in zip(values, noise["private"][site][key]):
                np.testing.assert_array_equal(a, b, err_msg=f"{rounds['names'][site]} {key}")
    # B's own state and the shared update did change, so the round saw the noise
    changed = "codes" if kind == "supervised" else "unlabelled_codes"
    assert not np.array_equal(clean["private"][1][changed][0], noise["private"][1][changed][0])
    assert any(not np.array_equal(a, b) for a, b in zip(clean["after"], noise["after"]))


def test_unsupervised_round_moves_g_s_g_m_and_unlabelled_codes_but_not_the_gans(rounds: dict) -> None:
    run = rounds["clean_unsupervised"]
    assert run["round"]["count"] == 3
    for site, private in enumerate(run["private"]):
        for before, after in zip(run["gans_before"][site], private["gan"]):
            np.testing.assert_array_equal(before, after)
        assert not np.allclose(private["unlabelled_codes"][0], 0.2 + 0.1 * site)
    moved = [not np.array_equal(a, b) for a, b in zip(run["before"], run["after"])]
    shape_variables = 6  # G_S: three dense layers; then G_M
    assert any(moved[:shape_variables]) and any(moved[shape_variables:])


def test_a_crashed_run_resumes_to_the_weights_of_an_uninterrupted_one(stage: dict) -> None:
    assert stage["crashes"] == list(CRASH_ROUNDS)
    whole, resumed = stage["whole"], stage["resumed"]
    for a, b in zip(whole["shared"], resumed["shared"]):
        np.testing.assert_array_equal(a, b)
    for site, (a, b) in enumerate(zip(whole["private"], resumed["private"])):
        for key in a:
            for x, y in zip(a[key], b[key]):
                np.testing.assert_array_equal(x, y, err_msg=f"site {site} {key}")
    for a, b in zip(whole["gans"], resumed["gans"]):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(whole["gaussian"], resumed["gaussian"])


def test_synthesize_draws_from_the_federated_generators_and_the_sites_own_gan(root: Path, stage: dict) -> None:
    cfg = config(root, "whole")
    common = dataclasses.replace(cfg.common, site="B")
    folder = synthesize.run(synthesize.SynthesizeConfig(common=common, num_samples=2, generator="federated",
                                                        slice_batch=8))
    assert os.path.basename(folder) == "B-federated-learned-learned-none"
    image = nib.load(os.path.join(folder, "synth_0001_image.nii.gz"))
    label = np.asarray(nib.load(os.path.join(folder, "synth_0001_label.nii.gz")).dataobj)
    assert image.shape == label.shape == (16, 16, 16)
    assert np.isin(np.unique(label), [0, 205, 420, 500, 550, 600, 820, 850]).all()
    with pytest.raises(UserInputError, match="federated stage trains learned-material GANs only"):
        synthesize.run(synthesize.SynthesizeConfig(common=common, num_samples=1, generator="federated",
                                                   material="fixmat"))


def test_a_site_without_labelled_volumes_is_a_start_up_error(tmp_path: Path, root: Path) -> None:
    write_site(tmp_path / "D", 5, seed=9)
    for path in (tmp_path / "D").glob("*_label.nii.gz"):
        path.unlink()
    cfg = config(root, "unused")
    sites = (*cfg.common.data_dirs[:2], str(tmp_path / "D"))
    bad = dataclasses.replace(cfg, common=dataclasses.replace(cfg.common, data_dirs=sites))
    with pytest.raises(UserInputError, match=r"site D .*labelled"):
        federated.prepare(bad)
    assert not os.path.exists(bad.common.work_dir) or not os.listdir(bad.common.work_dir)


def test_semi_rounds_without_unlabelled_volumes_are_refused(root: Path) -> None:
    cfg = config(root, "unused2")
    full = dataclasses.replace(cfg, common=dataclasses.replace(cfg.common, label_size=3))
    with pytest.raises(UserInputError, match="no unlabelled training volume in fold 0"):
        federated.prepare(full)
