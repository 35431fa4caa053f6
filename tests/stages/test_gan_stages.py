"""pretrain -> pretrain_gan -> synthesize on two tiny sites: the synthetic set is MM-WHS NIfTI on one grid,
artefacts are keyed by fold and refused across folds, a killed GAN run resumes exactly, bad or missing
upstream artefacts are one clear error with nothing half-written."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fedsim_tf.errors import UserInputError
from fedsim_tf.options import CommonConfig
from fedsim_tf.physics.simulated_scanner import SimulatedScanner
from fedsim_tf.stages import inputs, model_flags, pretrain, pretrain_gan, segment, semi, synthesize
from fedsim_tf.training import gan_pretraining
from fedsim_tf.training import semi as semi_loop
from fedsim_tf.training.gan_settings import GANSettings
from fedsim_tf.training.segmentation_settings import SegmentationSettings
from fedsim_tf.training.semi_settings import SemiSettings
from fedsim_tf.training.glo_settings import GLOSettings
from tests.stages.sites import write_site

MMWHS_CODES = {0, 205, 420, 500, 550, 600, 820, 850}


def _common(root: Path, fold: int = 0, site: str = "") -> CommonConfig:
    return CommonConfig(data_dirs=(str(root / "A"), str(root / "B")), layout="mmwhs", work_dir=str(root / "work"),
                        seed=1, fold=fold, label_size=2, volume_size=16, fov_mm=120.0, coarse_size=8, phantom_dir="",
                        phantom_small=True, site=site)


def _pretrain(common: CommonConfig) -> None:
    glo = GLOSettings(seed=common.seed, batch_size=2, steps=2, checkpoint_every=2, log_every=1)
    pretrain.run(pretrain.PretrainConfig(common=common, glo=glo, perceptual="none",
                                         model=model_flags.ModelConfig(latent_dim=4, scanner=SimulatedScanner(views=8))))


def _gan_config(common: CommonConfig, steps: int = 4, site: str = "", **changes: object
                ) -> pretrain_gan.PretrainGANConfig:
    gan = GANSettings(ngf=4, num_upsamplings=2, spade_hidden=8, ndf=4, seed=common.seed, batch_size=2)
    config = pretrain_gan.PretrainGANConfig(common=dataclasses.replace(common, site=site), gan=gan, steps=steps,
                                            perceptual="none", checkpoint_every=2, log_every=1)
    return dataclasses.replace(config, **changes)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two sites of 5 volumes (3 training, L = 2), pre-trained and with a learned-material GAN each."""
    root = tmp_path_factory.mktemp("gan_stages")
    write_site(root / "A", 5, seed=1)
    write_site(root / "B", 5, seed=2)
    common = _common(root)
    _pretrain(common)
    pretrain_gan.run(_gan_config(common))
    return root


def test_synthesize_writes_mmwhs_volumes_on_one_grid_with_a_manifest_and_montage(trained: Path) -> None:
    out = synthesize.run(synthesize.SynthesizeConfig(common=_common(trained, site="B"), num_samples=2, slice_batch=3))
    names = sorted(os.listdir(out))
    assert names == ["manifest.json", "montage.png", "synth_0001_image.nii.gz", "synth_0001_label.nii.gz",
                     "synth_0002_image.nii.gz", "synth_0002_label.nii.gz"]
    image, label = nib.load(os.path.join(out, names[2])), nib.load(os.path.join(out, names[3]))
    assert image.shape == label.shape == (16, 16, 16)
    np.testing.assert_array_equal(image.affine, label.affine)
    np.testing.assert_allclose(np.abs(np.diag(image.affine)[:3]), 7.5)  # 120 mm / 16 voxels
    codes = set(np.unique(np.asarray(label.dataobj)).tolist())
    assert codes <= MMWHS_CODES and len(codes) > 2
    hu = np.asarray(image.dataobj)
    assert image.get_data_dtype() == np.int16 and -200 <= hu.min() and hu.max() <= 800  # the HU window
    manifest = json.loads(Path(out, "manifest.json").read_text())
    assert (manifest["site"], manifest["fold"], manifest["num_samples"], manifest["gan_step"]) == ("B", 0, 2, 4)
    labelled = manifest["trained_on"]["labelled"]
    assert len(labelled["A"]) == len(labelled["B"]) == 2 and all(c.startswith("ct_train_10") for c in labelled["B"])
    assert Path(out) == trained / "work" / "synthesize" / "fold0_seed1_A-L2_B-L2" / "B-pretrain-learned-learned-none"
    assert not [p for p in os.listdir(Path(out).parent) if ".partial" in p]


def test_a_killed_gan_run_resumes_to_the_weights_of_an_uninterrupted_one(trained: Path, monkeypatch) -> None:
    common = dataclasses.replace(_common(trained), work_dir=str(trained / "work"))
    straight = pretrain_gan.run(_gan_config(common, steps=6, site="A", material="fixmat"))["A"]
    other = dataclasses.replace(common, work_dir=str(trained / "work_killed"))
    _pretrain(other)
    real_train_step = gan_pretraining.GANTrainer.train_step
    calls = []

    def dies_in_step_5(self, condition, real):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("killed")
        return real_train_step(self, condition, real)

    with monkeypatch.context() as patch:
        patch.setattr(gan_pretraining.GANTrainer, "train_step", dies_in_step_5)
        with pytest.raises(RuntimeError, match="killed"):
            pretrain_gan.run(_gan_config(other, steps=6, site="A", material="fixmat"))
    resumed = pretrain_gan.run(_gan_config(other, steps=6, site="A", material="fixmat"))["A"]
    for a, b in zip(straight.generator.weights + straight.discriminator.weights,
                    resumed.generator.weights + resumed.discriminator.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_upstream_artefacts_of_another_fold_are_refused(trained: Path) -> None:
    other_fold = _common(trained, fold=1)
    with pytest.raises(UserInputError, match=r"no pretrain model for fold1_seed1_A-L2_B-L2 .*runs found: "
                                             r"fold0_seed1_A-L2_B-L2"):
        pretrain_gan.run(_gan_config(other_fold))
    with pytest.raises(UserInputError, match=r"no pretrain model for fold1_seed1"):
        synthesize.run(synthesize.SynthesizeConfig(common=other_fold, num_samples=1))
    assert not (trained / "work" / "synthesize" / "fold1_seed1_A-L2_B-L2").exists()


def test_missing_or_corrupt_gan_is_one_clear_error_and_nothing_is_written(trained: Path) -> None:
    common = _common(trained)
    with pytest.raises(UserInputError, match=r"no fixmat GAN of site B .*run --stage=pretrain_gan --site=B "
                                             r"--material=fixmat"):
        synthesize.run(synthesize.SynthesizeConfig(common=_common(trained, site="B"), material="fixmat", num_samples=1))
    copy = dataclasses.replace(common, work_dir=str(trained / "work_corrupt"))
    _pretrain(copy)
    pretrain_gan.run(_gan_config(copy, steps=2, site="A"))
    data = next((trained / "work_corrupt" / "pretrain_gan").rglob("ckpt-2.data-*"))
    data.write_bytes(b"not a checkpoint")
    with pytest.raises(UserInputError, match=r"ckpt-2: unreadable checkpoint"):
        synthesize.run(synthesize.SynthesizeConfig(common=dataclasses.replace(copy, site="A"), num_samples=1))
    assert not (trained / "work_corrupt" / "synthesize").exists() or not any(
        (trained / "work_corrupt" / "synthesize").rglob("*.nii.gz"))


def test_segment_refuses_a_synthetic_set_of_another_fold_or_one_that_saw_its_test_volumes(trained: Path) -> None:
    out = Path(synthesize.run(synthesize.SynthesizeConfig(common=_common(trained, site="A"), num_samples=1,
                                                          slice_batch=4)))
    training = SegmentationSettings(unet="nnunet", base_filters=2, steps=2, pretrain_steps=2, val_every=2)
    template = str(out).replace("fold0_", "fold{fold}_")
    other_fold = segment.SegmentConfig(common=_common(trained, fold=1, site="A"), mode="finetune", folds=1,
                                       training=training, synthetic_dir=str(out))
    with pytest.raises(UserInputError, match="was synthesized for site A fold 0, not site A fold 1; use '{fold}'"):
        segment.run(other_fold)
    manifest = json.loads((out / "manifest.json").read_text())
    test_ids = inputs.plan_site(str(trained / "A"), _common(trained)).fold_ids(0)["test"]
    manifest["trained_on"]["labelled"]["A"] = test_ids
    (out / "manifest.json").write_text(json.dumps(manifest))
    same_fold = dataclasses.replace(other_fold, common=_common(trained, site="A"), synthetic_dir=template)
    with pytest.raises(UserInputError, match=f"comes from a generator trained on {test_ids[0]}, validation/test"):
        segment.run(same_fold)


def _semi_config(common: CommonConfig, steps: int) -> semi.SemiConfig:
    glo = GLOSettings(seed=common.seed, batch_size=2, steps=steps, checkpoint_every=2, log_every=1)
    return semi.SemiConfig(common=common, glo=glo, semi=SemiSettings(steps=steps, unlabelled_batch=1,
                                                                     checkpoint_every=2, log_every=1),
                           perceptual="none")


def test_unsupervised_steps_move_the_generators_and_unlabelled_codes_but_not_the_gan(trained: Path) -> None:
    common = dataclasses.replace(_common(trained), work_dir=str(trained / "work"))
    trainer = semi.run(_semi_config(common, steps=1))  # one supervised step
    assert sorted(site.name for site in trainer.sites) == ["A", "B"]  # one unlabelled volume each (5 - 2 - 2 + 0)
    gan = trainer.sites[0].gan
    before = {name: [v.numpy().copy() for v in variables] for name, variables in {
        "shape": trainer.glo.shape_generator.weights, "material": trainer.glo.material_generator.weights,
        "codes": [trainer.codes], "labelled": [trainer.glo.latents], "discriminator": gan.discriminator.weights,
        "gan_generator": gan.generator.weights}.items()}
    site, losses = trainer.unsupervised_step(0)
    assert site == "A" and np.isfinite(losses["g_total"])
    after = {"shape": trainer.glo.shape_generator.weights, "material": trainer.glo.material_generator.weights,
             "codes": [trainer.codes], "labelled": [trainer.glo.latents], "discriminator": gan.discriminator.weights,
             "gan_generator": gan.generator.weights}
    changed = {name: any(not np.array_equal(a, b.numpy()) for a, b in zip(before[name], after[name])) for name in after}
    assert changed == {"shape": True, "material": True, "codes": True, "labelled": False, "discriminator": False,
                       "gan_generator": False}
    assert not np.array_equal(before["codes"][0][0], trainer.codes.numpy()[0])  # site A's unlabelled code moved
    np.testing.assert_array_equal(before["codes"][0][1], trainer.codes.numpy()[1])  # site B's did not


def test_semi_resumes_exactly_and_synthesize_draws_from_it(trained: Path, monkeypatch) -> None:
    base = _common(trained)
    runs = {}
    for name in ("a", "b"):
        work = dataclasses.replace(base, work_dir=str(trained / f"work_semi_{name}"))
        _pretrain(work)
        pretrain_gan.run(_gan_config(work, steps=2))
        runs[name] = work
    whole = semi.run(_semi_config(runs["a"], 4))
    real_step = semi_loop.SemiTrainer.train_step
    calls = []

    def dies_in_step_4(self, step):
        calls.append(step)
        if len(calls) == 4:
            raise RuntimeError("killed")
        return real_step(self, step)

    with monkeypatch.context() as patch:
        patch.setattr(semi_loop.SemiTrainer, "train_step", dies_in_step_4)
        with pytest.raises(RuntimeError, match="killed"):
            semi.run(_semi_config(runs["b"], 4))
    resumed = semi.run(_semi_config(runs["b"], 4))
    for a, b in zip(whole.glo.shape_generator.weights + whole.glo.material_generator.weights + [whole.codes],
                    resumed.glo.shape_generator.weights + resumed.glo.material_generator.weights + [resumed.codes]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    out = synthesize.run(synthesize.SynthesizeConfig(common=dataclasses.replace(runs["a"], site="A"), num_samples=1,
                                                     generator="semi", slice_batch=4))
    assert json.loads(Path(out, "manifest.json").read_text())["generator_step"] == 4
