"""The in-process federation (MirroredStrategy, 3 logical CPU devices) against hand computations.

The federation runs in subprocesses (:mod:`tests.federation.harness`: logical devices must be set up
before TensorFlow initialises, which pytest's process has done); these tests check what they saw
against the float64 reference steps of :mod:`tests.federation.toy`. About 60 s in all (two
subprocesses, on 2 shared cores).
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.federation import toy

ROOT = Path(__file__).resolve().parents[2]
SITES = ("A", "B", "C")
PRIVATE = ("codes", "head/0", "head/1", "critic/0", "critic/1")


def _harness(mode: str, folder: Path) -> tuple[dict, str]:
    out = folder / f"{mode}.pkl"
    result = subprocess.run(
        [sys.executable, "-m", "tests.federation.harness", mode, str(out), str(folder)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True, text=True, timeout=900,
    )
    if result.returncode != 0:
        pytest.fail(f"harness {mode} failed:\n{result.stderr[-6000:]}")
    with open(out, "rb") as file:
        return pickle.load(file), result.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    folder = tmp_path_factory.mktemp("federation")
    observed, log = _harness("main", folder)
    return observed, log, folder


def _relative(value: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(value, np.float64) - expected) / np.linalg.norm(expected))


def _references(run: dict, sites: list[int]) -> list[dict]:
    before = run["before"]
    return [toy.reference_round(before["shared"], before["private"][s], run["batches"][s]) for s in sites]


def _check_shared_step(run: dict, sites: list[int]) -> None:
    """The shared variables moved by -lr * mean over ``sites`` of their reference gradients (SGD, lr 1)."""
    references = _references(run, sites)
    for k, (before, after) in enumerate(zip(run["before"]["shared"], run["after"]["shared"])):
        expected = -np.mean([ref["shared_grad"][k] for ref in references], axis=0)
        moved = np.asarray(after, np.float64) - before
        assert _relative(moved, expected) <= 1e-5, f"shared variable {k}"


def test_round_moves_shared_variables_by_the_mean_of_site_gradients(runs: tuple[dict, str, Path]) -> None:
    run = runs[0]["clean"]
    assert run["result"]["count"] == 3 and run["result"]["used"] == [True, True, True]
    _check_shared_step(run, [0, 1, 2])
    assert all(run["mirror_copies_equal"])


def test_each_site_steps_its_private_state_with_its_own_optimisers(runs: tuple[dict, str, Path]) -> None:
    run = runs[0]["clean"]
    for s, reference in enumerate(_references(run, [0, 1, 2])):
        assert run["result"]["losses"][s]["fit"] == pytest.approx(reference["loss"], rel=1e-5)
        for key in PRIVATE:
            assert _relative(run["after"]["private"][s][key], reference["private"][key]) <= 1e-5, (SITES[s], key)


def test_other_sites_data_leaves_a_sites_private_state_bit_identical(runs: tuple[dict, str, Path]) -> None:
    clean, noise = runs[0]["clean"], runs[0]["noise"]
    assert not np.array_equal(clean["batches"][1][0], noise["batches"][1][0])
    for s in (0, 2):
        before, after_clean = clean["before"]["private"][s], clean["after"]["private"][s]
        after_noise = noise["after"]["private"][s]
        assert set(after_clean) == set(after_noise) and len(after_clean) > len(PRIVATE)  # optimiser slots included
        for key in after_clean:
            assert np.array_equal(after_clean[key], after_noise[key]), (SITES[s], key)
        assert not np.array_equal(after_clean["codes"], before["codes"])
    assert not np.array_equal(clean["after"]["private"][1]["head/0"], noise["after"]["private"][1]["head/0"])
    assert not np.array_equal(clean["after"]["shared"][0], noise["after"]["shared"][0])


def test_only_the_shared_variables_are_mirrored_and_reduced(runs: tuple[dict, str, Path]) -> None:
    run = runs[0]["clean"]
    shared_shapes = [tuple(shape) for shape in toy.SHARED_SHAPES]
    reductions = Counter(shape for kind, shape in run["reductions"] if kind == "reduce")
    assert reductions == Counter(shared_shapes)
    # the all-reduce sends each reduced tensor back, plus the server optimiser's step counter
    broadcasts = Counter(shape for kind, shape in run["reductions"] if kind == "broadcast")
    assert broadcasts == Counter(shared_shapes + [()])
    rows, devices = run["placement"]["rows"], run["placement"]["site_devices"]
    mirrored = [row for row in rows if row["mirrored"]]
    assert [row["shape"] for row in mirrored if row["role"] == "shared"] == shared_shapes
    assert {row["role"] for row in mirrored} == {"shared", "server"}
    for row in rows:
        if row["role"].startswith("private"):
            site = int(row["role"][len("private"):])
            assert len(row["devices"]) == 1 and row["devices"][0].endswith(devices[site].lstrip("/")), row
    assert not set(shared_shapes) & {row["shape"] for row in rows if row["role"].startswith("private")}


def test_non_finite_site_is_dropped_from_the_round(runs: tuple[dict, str, Path]) -> None:
    run, clean = runs[0]["nan"], runs[0]["clean"]
    assert run["result"]["used"] == [True, False, True] and run["result"]["count"] == 2
    assert run["result"]["dropped"] == ["B"] and np.isnan(run["result"]["losses"][1]["fit"])
    _check_shared_step(run, [0, 2])
    for key, value in run["before"]["private"][1].items():
        assert np.array_equal(run["after"]["private"][1][key], value), ("B", key)
    for s in (0, 2):
        for key, value in clean["after"]["private"][s].items():
            assert np.array_equal(run["after"]["private"][s][key], value), (SITES[s], key)
    assert re.search(r"federated round 0: site\(s\) B left out \(non-finite loss or gradient\); 2 of 3", runs[1])


def test_numpy_backed_shape_op_runs_inside_the_distributed_step(runs: tuple[dict, str, Path]) -> None:
    """The real shape op (``tf.numpy_function`` forward, finite-difference gradient) in every site's loss:
    the round moves the shared generator by the mean of the sites' eager single-device gradients."""
    run = runs[0]["shape_op"]
    assert run["result"]["count"] == 3
    for k, (before, after) in enumerate(zip(run["before"], run["after"])):
        expected = -np.mean([site[k] for site in run["eager"]], axis=0)
        assert np.linalg.norm(expected) > 0
        assert _relative(np.asarray(after, np.float64) - before, expected) <= 1e-5, k


def test_shared_forward_state_is_averaged_over_the_finite_sites(runs: tuple[dict, str, Path]) -> None:
    """BatchNorm moving statistics of a shared model: every copy ends at the mean of the statistics that
    sites A and C give on their own (single-device runs); B's NaN batch leaves no trace."""
    run = runs[0]["shared_state"]
    assert run["result"]["used"] == [True, False, True]
    for k, copies in enumerate(run["copies"]):
        expected = (np.asarray(run["single"][0][k], np.float64) + run["single"][2][k]) / 2
        assert np.isnan(run["single"][1][k]).all() and not np.allclose(run["single"][0][k], run["single"][2][k])
        for copy in copies:
            np.testing.assert_array_equal(copy, copies[0])
        np.testing.assert_allclose(copies[0], expected, rtol=1e-6)


def test_resumed_run_equals_uninterrupted_run(runs: tuple[dict, str, Path]) -> None:
    observed, _, folder = runs
    resumed, _ = _harness("resume", folder)
    straight = observed["straight"]
    assert set(resumed["resumed"]) == set(straight)
    for key, value in straight.items():
        assert np.array_equal(resumed["resumed"][key], value), key
    np.testing.assert_equal(resumed["resumed_results"], observed["straight_results"][2:])  # NaN == NaN here
    assert observed["straight_results"][2]["dropped"] == ["C"]
    assert observed["tracings"] == (1, 1)


def test_wiring_mistakes_are_clear_errors(runs: tuple[dict, str, Path]) -> None:
    errors = runs[0]["errors"]
    assert re.search(r"configure_site_devices\(2, 'CPU'\) must run before TensorFlow initialises its devices",
                     errors["too_late"])
    assert errors["again"] == ["/device:CPU:0", "/device:CPU:1", "/device:CPU:2"]
    assert re.search(r"2 site\(s\) for 3 replica\(s\)", errors["count"])
    assert re.search(r"sites must run the same phases", errors["structure"])
    assert re.search(r"site 'B': private variable B_codes.* is on .*CPU:0, not on the site's device .*CPU:1",
                     errors["device"])
    assert re.search(r"site 'C': private variable A_codes.* also belongs to site 'A'", errors["owner"])
    assert re.search(r"site 1's dataset is empty from round 0", errors["empty"])
    assert re.search(r"site 1's batches .* differ from site 0's .*: sites need the same structure", errors["spec"])
