"""The out-of-distribution study of the Table 3 protocol (paper Sec. 3): does site A's segmentation network
still work on volumes in another site's appearance?

Per label-size setting, fold and site A, an ``ood`` cell takes A's network -- the fold's Upper Bound U-Net
(``segment --mode=upper``, the weights selected on validation) -- and scores its per-volume Dice on A's test
volumes (a) as they are, exactly as ``segment`` tested them, and (b) as every site S's learned-material GAN
(``pretrain_gan`` of the setting's generator chain of S) renders them from A's ground-truth labels and A's
real CT downsampled to the coarse grid (:mod:`fedsim_tf.synthesis.translation`). S = A is the same-site
control; S != A are the out-of-distribution cases. Dice is against A's labels on A's grid (the translation
keeps the grid), the target ``label > 0`` as everywhere in Table 3.

The translated volumes are written for inspection under ``<work_dir>/experiment/ood/<cell key>/<S>/`` in the
MM-WHS layout (``<case>_image.nii.gz`` int16 HU, ``<case>_label.nii.gz`` A's label in MM-WHS codes, on A's
preprocessed grid), each file atomically.

Plain Python at import (TensorFlow loads in :func:`execute`), so the experiment's command line is checked first.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from absl import logging

from fedsim_tf.data.labels import MMWHS_TABLE, encode_labels
from fedsim_tf.data.layouts import case_filenames
from fedsim_tf.data.nifti import write_nifti
from fedsim_tf.errors import UserInputError
from fedsim_tf.evaluation.dice import mean_std
from fedsim_tf.evaluation.report import format_cell
from fedsim_tf.experiments import table3_cells
from fedsim_tf.experiments.cells import Cell
from fedsim_tf.intensity import unit_to_hu
from fedsim_tf.models.generative_model import GANRun, GeneratorRun
from fedsim_tf.stages import inputs, segment

if TYPE_CHECKING:
    import keras

    from fedsim_tf.training.segmentation import Volumes

NETWORK = "Upper Bound"
"""The Table 3 row whose U-Net is site A's network."""
MATERIAL = "learned"
"""The GANs applied: conditioned on an upsampled coarse CT, the input a downsampled real CT can take the place of."""
OOD_DIR = os.path.join("experiment", "ood")
"""Where the translated volumes go, under ``--work_dir`` (beside the experiment's cell records)."""


def network_cell(cell: Cell) -> Cell:
    """The ``segment`` cell that trains site A's network of ``cell``'s fold (the Upper Bound: every label, so
    one per fold whatever the setting)."""
    return Cell("segment", cell.fold, "", site=cell.site, method=NETWORK)


def gan_cell(cell: Cell, site: str, generator: str) -> Cell:
    """The ``pretrain_gan`` cell that trains ``site``'s learned-material GAN in ``generator``'s chain of
    ``cell``'s setting and fold."""
    return Cell("pretrain_gan", cell.fold, cell.setting, generator, site, material=MATERIAL)


def _gan(configs: table3_cells.StageConfigs, cell: Cell, site: str, generator: str) -> tuple[Any, GANRun]:
    """``pretrain_gan``'s settings of ``site``'s GAN and its run folder."""
    config = table3_cells.stage_config(configs, gan_cell(cell, site, generator))
    training_set = inputs.training_set(inputs.plan_sites(config.common), config.common)
    return config, GANRun(config.common.work_dir, training_set, site, MATERIAL)


def settings(configs: table3_cells.StageConfigs, cell: Cell, generator_of: Mapping[str, str]) -> dict[str, Any]:
    """What an ``ood`` cell's result depends on (JSON-able): the network's ``segment`` settings and, per site
    S of ``generator_of`` (site -> the generator chain whose GAN is that site's), its GAN's ``pretrain_gan``
    settings and folder."""
    gans = {}
    for site, generator in generator_of.items():
        config, run = _gan(configs, cell, site, generator)
        gans[site] = {"config": dataclasses.asdict(config), "folder": run.folder}
    return {"network": dataclasses.asdict(table3_cells.segment_config(configs, network_cell(cell))), "gans": gans}


def _mean_std(dice: Mapping[str, float | None]) -> tuple[float, float]:
    """Mean and std over volumes of per-volume Dice, empty ground truths (``None``) left out; NaN when none."""
    return mean_std(np.nan if value is None else value for value in dice.values())


def network_dice(model: keras.Model, volumes: Volumes, patch_size: int) -> dict[str, float | None]:
    """Per-volume Dice of a U-Net on labelled volumes, as ``segment`` tests (foreground: logit > 0, by sliding
    windows of ``patch_size`` when > 0; target ``label > 0``).

    Args:
        model: the U-Net (:func:`fedsim_tf.training.segmentation.load_best_model`).
        volumes: ``[N, Z, Y, X]`` images on the ``[-1, 1]`` scale and labels.
        patch_size: the U-Net's training patch edge, or 0 (it takes whole volumes).

    Returns:
        Case id -> Dice in [0, 1] (``None`` for an empty ground truth).
    """
    from fedsim_tf.evaluation.dice import dice_per_volume
    from fedsim_tf.training.segmentation import predict_masks

    values = dice_per_volume(predict_masks(model, volumes, patch_size), volumes.labels)
    return {case: None if math.isnan(value) else float(value) for case, value in zip(volumes.ids, values.tolist())}


def execute(configs: table3_cells.StageConfigs, cell: Cell, generator_of: Mapping[str, str]) -> dict[str, Any]:
    """Score site A's (``cell.site``) network on A's test volumes, real and rendered by every site's GAN.

    Args:
        configs: every stage's settings.
        cell: the ``ood`` cell (fold, setting, site A).
        generator_of: site S -> the generator chain whose GAN is S's (a site name, or
            :data:`fedsim_tf.experiments.cells.POOLED`), in the order of the columns.

    Returns:
        ``{"site", "fold", "setting", "network", "real": {case: dice}, "translated": {S: {case: dice}}}``
        (Dice in [0, 1], ``None`` for an empty ground truth).

    Raises:
        UserInputError: the network's fold or a GAN is missing (naming what to run first).
    """
    needed_by = f"experiment cell {cell.key}"
    network = table3_cells.segment_config(configs, network_cell(cell))
    common = network.common
    plan = inputs.pick_site(inputs.plan_sites(common), cell.site)
    fold_dir = segment.fold_folder(network, plan.name, plan.n_train, cell.fold)
    if not os.path.isfile(os.path.join(fold_dir, "result.json")):
        raise UserInputError(f"{needed_by}: {fold_dir} has no result.json; run the {NETWORK} cell "
                             f"{network_cell(cell).key} first")
    gans = {}
    for site, generator in generator_of.items():
        _, run = _gan(configs, cell, site, generator)
        gan_settings, image_size = run.load_record(needed_by)
        model = GeneratorRun(run.work_dir, run.training_set).load_model(needed_by)
        if image_size != common.volume_size or model.label_grid.shape != (common.volume_size,) * 3:
            raise UserInputError(f"{run.record_path}: a GAN of {image_size}^2 slices on a {model.label_grid.shape} "
                                 f"label grid, but site {plan.name}'s volumes are {common.volume_size}^3 "
                                 "(--volume_size); train the GAN again")
        gans[site] = (run, gan_settings, image_size, model.coarse_size)
    ids = plan.fold_ids(cell.fold, plan.n_train)["test"]
    cases = inputs.load_plan(plan, common).cases

    # TensorFlow loads here, once the inputs are checked.
    from fedsim_tf.models.slice_synthesis import SliceSynthesizer
    from fedsim_tf.synthesis.translation import translate
    from fedsim_tf.training import segmentation
    from fedsim_tf.training.checkpoints import StageCheckpoint
    from fedsim_tf.training.gan import build_gan_models

    test = segmentation.volumes_from_cases(cases, ids, f"site {plan.name} fold {cell.fold} test")
    network_model = segmentation.load_best_model(network.training, test.images.shape[1:], fold_dir)
    patch = network.training.patch_size
    out_dir = os.path.join(common.work_dir, OOD_DIR, cell.key)
    translated = {}
    for site, (run, gan_settings, image_size, coarse_size) in gans.items():
        generator, _ = build_gan_models(gan_settings, image_size)
        StageCheckpoint(run.checkpoint_dir, generator=generator).restore_latest()
        slices = SliceSynthesizer(generator, configs.synthesize.slice_batch)
        images = np.stack([translate(slices, image, label, coarse_size)
                           for image, label in zip(test.images, test.labels)])
        for case, image, label in zip(ids, images, test.labels):
            image_name, label_name = case_filenames(case)
            grid = cases[case].grid
            write_nifti(os.path.join(out_dir, site, image_name),
                        np.rint(unit_to_hu(np.clip(image, -1.0, 1.0))).astype(np.int16), grid)
            write_nifti(os.path.join(out_dir, site, label_name), encode_labels(label, MMWHS_TABLE), grid,
                        dtype=np.uint16)
        translated[site] = network_dice(network_model, dataclasses.replace(test, images=images), patch)
        logging.info("ood %s: %s's network on %d test volumes rendered by %s's GAN: mean Dice %.4f -> %s", cell.key,
                     plan.name, len(ids), site, _mean_std(translated[site])[0],
                     os.path.join(out_dir, site))
    real = network_dice(network_model, test, patch)
    logging.info("ood %s: on the real test volumes: mean Dice %.4f", cell.key,
                 _mean_std(real)[0])
    return {"site": plan.name, "fold": cell.fold, "setting": cell.setting, "network": NETWORK, "real": real,
            "translated": translated}


def _setting_title(setting: str) -> str:
    return f"label sizes `{setting}`" if setting else "the run's label sizes"


def markdown_lines(outputs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The report's section "Out of distribution": per setting and fold (first appearance order), a table with
    one row per network site A and the columns real CT and GAN of each site S (first appearance order), each
    cell the mean ± std (over test volumes; empty ground truths left out) of the per-volume Dice in %."""
    lines = ["## Out of distribution", "",
             f"Each site's {NETWORK} U-Net (selected on validation), tested on its own test volumes as they are "
             "(real CT) and as each site's GAN renders them from their ground-truth labels and their CT downsampled "
             "to the coarse grid (GAN of the network's own site: the same-site control); Dice in %, mean ± std over "
             "test volumes.", ""]
    groups: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for output in outputs:
        groups.setdefault((output["setting"], int(output["fold"])), []).append(output)
    for (setting, fold), group in groups.items():
        sites = list(dict.fromkeys(site for output in group for site in output["translated"]))
        lines += [f"### {_setting_title(setting)}, fold {fold}", "",
                  "| Network of site | Real CT | " + " | ".join(f"GAN of {site}" for site in sites) + " |",
                  "|---|---|" + "---|" * len(sites)]
        for output in group:
            columns = [output["real"]] + [output["translated"].get(site) for site in sites]
            cells = [format_cell(*_mean_std(column)) if column is not None else "n/a" for column in columns]
            lines.append(f"| {output['site']} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines
