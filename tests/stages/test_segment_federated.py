"""The segment stage's federated comparison: Direct-FL (``--mode=direct_fl``) and Ours-Sim-FL (``--mode=sim_fl``).

Direct-FL runs in a subprocess (:mod:`tests.stages.segment_federated_harness`: 3 logical CPU devices must
be set up before TensorFlow initialises); Sim-FL and the flag checks run here. About 100 s in all on 2
cores (the harness about 75 s).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from absl.testing import flagsaver

from fedsim_tf.errors import UserInputError
from fedsim_tf.evaluation.report import RESULT_SCHEMA
from fedsim_tf.options import CommonConfig
from fedsim_tf.stages import inputs, segment
from fedsim_tf.training.segmentation_settings import SegmentationSettings
from tests.stages.federated_sites import SITES, e2e_config, site_volumes, write_sites
from tests.stages.sites import BLOOD_HU, write_site

ROOT = Path(__file__).resolve().parents[2]
FEDERATION = "A-L2_B-L2_C-L2"  # every site with its 2 labelled training volumes


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("direct_fl")
    out = folder / "observed.pkl"
    result = subprocess.run(
        [sys.executable, "-m", "tests.stages.segment_federated_harness", str(out), str(folder)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
                       "FEDSIM_CACHE_DIR": str(folder / "cache")},
        capture_output=True, text=True, timeout=900,
    )
    if result.returncode != 0:
        pytest.fail(f"harness failed:\n{result.stderr[-6000:]}")
    with open(out, "rb") as file:
        return pickle.load(file)


def _relative(value: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(value, np.float64) - expected) / np.linalg.norm(expected))


def test_direct_fl_round_moves_the_unet_by_the_mean_of_the_sites_eager_gradients(harness: dict) -> None:
    run = harness["round"]
    assert run["result"]["count"] == 3 and run["result"]["used"] == [True, True, True]
    for site, (images, labels) in enumerate(run["batches"]):
        # One whole unaugmented volume per site, and one of its own (site s's images are offset by 2 s).
        assert images.shape == (1, 16, 16, 16, 1) and labels.shape == (1, 16, 16, 16)
        assert any(np.array_equal(images[0, ..., 0], volume) for volume in run["volumes"][site])
    # SGD at lr 1000: the step dwarfs the float32 spacing of the weights (~1e-7), so after - before
    # resolves the gradient to ~1e-7 relative.
    lr = 1e3
    moved = [np.asarray(after, np.float64) - before for before, after in zip(run["before"], run["after"])]
    expected = [-lr * np.mean([np.asarray(grads[k], np.float64) for grads in run["eager"]], axis=0)
                for k in range(len(moved))]
    assert _relative(np.concatenate([m.ravel() for m in moved]), np.concatenate([e.ravel() for e in expected])) <= 1e-5
    for k, (step, reference) in enumerate(zip(moved, expected)):
        # Per variable, relative to the sites' own gradients: their mean may cancel to far below them,
        # and graph and eager float32 sums differ by ~1e-7 of the terms summed.
        scale = lr * np.mean([np.linalg.norm(np.asarray(grads[k], np.float64)) for grads in run["eager"]])
        assert np.linalg.norm(step - reference) <= 1e-5 * scale, f"variable {k}"


def test_direct_fl_resumes_like_an_uninterrupted_run(harness: dict) -> None:
    run = harness["resume"]
    assert run["crashed"] == "crashed at 3" and "ckpt-2.index" in run["saved_before_resume"]
    assert "ckpt-4.index" not in run["saved_before_resume"]
    assert len(run["straight"]) == len(run["resumed"]) > 0
    for straight, resumed in zip(run["straight"], run["resumed"]):
        np.testing.assert_array_equal(resumed, straight)


def _check_records(records: list[dict], mode: str, method: str) -> None:
    assert [r["site"] for r in records] == list(SITES)
    for record in records:
        assert record["schema"] == RESULT_SCHEMA and record["method"] == method and record["label_size"] == 2
        assert record["run_name"] == f"segment_{mode}_{record['site']}_L2_nnunet_fed-{FEDERATION}"
        assert record["config"]["training"]["batch_size"] == 3
        dice = list(record["folds"][0]["test_dice"].values())
        assert dice and all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in dice)
        assert record["folds"][0]["steps"] == (2 if mode == "direct_fl" else 5)


def test_direct_fl_fine_tunes_and_reports_every_site(harness: dict) -> None:
    records = harness["direct_fl"]["records"]
    _check_records(records, "direct_fl", "Direct-FL")
    for record in records:
        pretrain = record["pretrain"][0]
        assert pretrain["steps"] == 3 and pretrain["source"].endswith(
            f"segment_direct_fl_nnunet_fed-{FEDERATION}/fold0/federated.weights.h5")
        assert len(pretrain["cases"]) == 6 and {c.split("/")[0] for c in pretrain["cases"]} == set(SITES)
    assert re.search(r"^\| Direct-FL \| [0-9.]+ ± [0-9.]+ \| [0-9.]+ ± [0-9.]+ \| [0-9.]+ ± [0-9.]+ \|$",
                     harness["direct_fl"]["table"], re.M)


def _write_synthetic_sets(work_dir: Path, common: CommonConfig) -> None:
    """Stand-ins of ``--stage=synthesize --generator=federated`` sets (MM-WHS layout and manifest)."""
    trained_on = inputs.training_set(inputs.plan_sites(common), common).to_json()
    for index, name in enumerate(SITES):
        folder = work_dir / "synthesize" / f"fold0_seed3_{FEDERATION}" / f"{name}-federated-learned-learned-none"
        write_site(folder, 4, seed=40 + index, prefix="synth_", myocardium_hu=BLOOD_HU)
        (folder / "manifest.json").write_text(json.dumps({"site": name, "fold": 0, "trained_on": trained_on}))


def test_sim_fl_pretrains_each_site_on_its_federated_synthetic_set(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FEDSIM_CACHE_DIR", str(tmp_path / "cache"))
    config = e2e_config(str(tmp_path / "work"), write_sites(tmp_path / "sites"), "sim_fl")
    missing = re.escape(f"--mode=sim_fl: no synthetic set {tmp_path}/work/synthesize/fold0_seed3_{FEDERATION}/"
                        "A-federated-learned-learned-none for site A fold 0; make it with --stage=synthesize "
                        "--generator=federated --site=A --fold=0")
    with pytest.raises(UserInputError, match=missing) as error:
        segment.run(config)
    assert "\n" not in str(error.value)
    _write_synthetic_sets(tmp_path / "work", config.common)
    records = segment.run(config)
    _check_records(records, "sim_fl", "Ours-Sim-FL")
    for name, record in zip(SITES, records):
        assert record["pretrain"] == [{
            "fold": 0, "steps": 3, "cases": [f"synth_{n}" for n in range(1001, 1005)],
            "source": f"{tmp_path}/work/synthesize/fold0_seed3_{FEDERATION}/{name}-federated-learned-learned-none"}]
    table = (tmp_path / "work" / "results" / "table3.md").read_text()
    assert table.count("| Ours-Sim-FL |") == 1 and "A L=2 | B L=2 | C L=2" in table


@pytest.mark.parametrize("mode", segment.FEDERATED_MODES)
def test_federated_modes_train_with_batch_three_on_every_site(mode: str) -> None:
    segment.FLAGS.mark_as_parsed()  # defaults, as after an empty command line
    with flagsaver.flagsaver(mode=mode, seg_batch_size=1, seg_pretrain_steps=7, fed_devices="CPU"):
        config = segment.config_from_flags()
    assert (config.training.batch_size, config.training.pretrain_steps, config.devices.kind) == (3, 7, "CPU")
    with flagsaver.flagsaver(mode=mode, site="A"), pytest.raises(
            UserInputError, match=re.escape(f"--site=A: --mode={mode} trains and reports every site; drop --site")):
        segment.config_from_flags()
    with flagsaver.flagsaver(mode=mode, seg_pretrain_steps=0), pytest.raises(
            UserInputError, match=re.escape(f"--mode={mode} needs --seg_pretrain_steps > 0")):
        segment.config_from_flags()


@pytest.mark.parametrize("unet, batch_norms", [("nnunet", 0), ("cicek", 14)])
def test_direct_fl_aggregates_exactly_the_unets_variables(unet: str, batch_norms: int) -> None:
    import keras

    from fedsim_tf.training import federated_segmentation

    settings = SegmentationSettings(unet=unet, base_filters=2, seed=1)
    federation = federated_segmentation.DirectFederation(settings, [site_volumes(0)], ["A"], 0, 2, ["/cpu:0"])
    layers = federation.model.layers
    norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    state = [v.path for layer in norms for v in (layer.moving_mean, layer.moving_variance)]
    # cicek: 2 convolutions per level (4 levels) and per decoder level (3), each followed by batch norm.
    assert len(norms) == batch_norms
    assert sorted(v.path for v in federation.engine.shared_state) == sorted(state)
    weights = [v.path for layer in layers for v in layer.weights if v.path not in state]
    assert sorted(v.path for v in federation.engine.shared_variables) == sorted(weights) and weights
    assert {v.path for v in federation.engine.shared_variables} == {v.path for v in federation.model.trainable_variables}


def test_table3_lists_the_federated_rows_after_the_single_site_ones() -> None:
    from fedsim_tf.evaluation.report import markdown_table

    reports = [{"method": method, "site": "A", "label_size": 2, "mean": 0.5, "std": 0.0}
               for method in ("Direct-FL", "Pre-train x", "Upper Bound", "Ours-Sim-FL", "Lower Bound", "Pre-train b")]
    rows = [line.split(" | ")[0][2:] for line in markdown_table(reports).splitlines()[2:]]
    assert rows == ["Lower Bound", "Pre-train x", "Pre-train b", "Upper Bound", "Direct-FL", "Ours-Sim-FL"]
