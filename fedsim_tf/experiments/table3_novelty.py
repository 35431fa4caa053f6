"""The novelty cell of the Table 3 protocol (paper Fig. 3) and its part of the report.

One cell per label-size setting, fold and site, after the site's synthetic sets: the site's Ours-Full
synthetic set (``semi`` generator, learned material) against every training volume of the fold at that
site (labelled and unlabelled: the semi-supervised generator saw both), by whole-volume Euclidean
distance in HU (:mod:`fedsim_tf.experiments.novelty`; both sets preprocessed to the same grid, intensities
inside the HU window of :mod:`fedsim_tf.intensity`). The cell writes a montage of its first
:data:`MONTAGE_SAMPLES` samples, each above its nearest training volume (label contours where the training
volume is labelled), to ``<work_dir>/experiment/novelty/<cell key>.png``; the report stacks the sites'
montages of the first setting and fold into ``table3_novelty_montage.png`` and tabulates every cell.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fedsim_tf.atomic import atomic_path
from fedsim_tf.experiments.cells import Cell
from fedsim_tf.experiments.novelty import novelty_summary
from fedsim_tf.experiments.table3_cells import StageConfigs, synthesize_config, synthetic_folder
from fedsim_tf.intensity import unit_to_hu
from fedsim_tf.stages import inputs
from fedsim_tf.synthesis.montage import GAP_PIXELS, write_montage

MONTAGE_SAMPLES = 2
"""Synthetic samples per site in the montage, each shown above its nearest training volume."""


def execute(configs: StageConfigs, cell: Cell) -> dict[str, Any]:
    """Measure the novelty of ``cell``'s synthetic set and write its montage; returns the cell's output:
    site, fold, setting, the set's folder, sample and training case ids, the
    :meth:`~fedsim_tf.experiments.novelty.NoveltySummary.to_json` fields (distances in HU times
    ``sqrt(voxels)``, ``*_rms`` in HU) and the montage's path."""
    config = synthesize_config(configs, cell)
    common = config.common
    folder = synthetic_folder(configs, cell)
    plan = inputs.pick_site(inputs.plan_sites(common), cell.site)
    ids = plan.fold_ids(cell.fold)
    training_ids = ids["train_labelled"] + ids["train_unlabelled"]
    site = inputs.load_plan(plan, common)
    synthetic = inputs.load_synthetic(folder, common)
    samples = sorted(synthetic.cases)
    synthetic_hu = np.stack([unit_to_hu(synthetic.cases[name].image.astype(np.float64)) for name in samples])
    training_hu = np.stack([unit_to_hu(site.cases[case].image.astype(np.float64)) for case in training_ids])
    summary = novelty_summary(synthetic_hu, training_hu).to_json()

    rows, captions = [], []
    for index in range(min(MONTAGE_SAMPLES, len(samples))):
        nearest = training_ids[summary["nn_index"][index]]
        neighbour = site.cases[nearest]
        rows += [(synthetic_hu[index], synthetic.cases[samples[index]].label),
                 (training_hu[summary["nn_index"][index]],
                  neighbour.label if neighbour.label is not None else np.zeros(neighbour.image.shape, np.uint8))]
        captions += [f"{cell.site} synthetic {samples[index]}",
                     f"nearest training volume {nearest} (RMS {summary['nn_rms'][index]:.0f} HU"
                     f"{'' if neighbour.labelled else ', unlabelled'})"]
    montage = os.path.join(common.work_dir, "experiment", "novelty", f"{cell.key}.png")
    write_montage(montage, rows, captions)
    return {"site": cell.site, "fold": cell.fold, "setting": cell.setting, "synthetic_dir": folder,
            "samples": samples, "training_ids": training_ids, **summary, "montage": montage}


def markdown_lines(outputs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The report's novelty section: one line per cell (site, setting, fold) with the median and smallest
    nearest-neighbour RMS distance of its samples, the training set's own leave-one-out RMS distances, and
    the fractions of samples closer than the closest / the median training pair."""
    lines = ["## Novelty (paper Fig. 3): nearest training volume of each Ours-Full synthetic volume", "",
             "Whole-volume RMS voxel difference in HU (inside the network's HU window) between each synthetic volume "
             "and its nearest training volume of the site and fold, against the training volumes' own leave-one-out "
             "nearest distances. A sample below the smallest training distance is closer to a training volume than "
             "any two training volumes are to each other (copy-like). Montage: `table3_novelty_montage.png`.", "",
             "| Site | Setting | Fold | Samples | NN RMS median (min) | Training LOO RMS median (min) | "
             "Below min | Below median |", "|---|---|---|---|---|---|---|---|"]
    for out in outputs:
        nn, own = np.asarray(out["nn_rms"]), np.asarray(out["training_self_rms"])
        lines.append(f"| {out['site']} | {out['setting'] or 'default'} | {out['fold']} | {len(nn)} | "
                     f"{np.median(nn):.1f} ({nn.min():.1f}) | {np.median(own):.1f} ({own.min():.1f}) | "
                     f"{100 * out['fraction_below_min_self']:.0f} % | {100 * out['fraction_below_median_self']:.0f} % |")
    return lines + [""]


def write_montage_sheet(path: str | os.PathLike[str], outputs: Sequence[Mapping[str, Any]]) -> Path:
    """Stack the montages of the first setting and fold (one block per site, in order) into one PNG,
    atomically; returns its path."""
    first = (outputs[0]["setting"], outputs[0]["fold"])
    images = [np.asarray(Image.open(out["montage"]).convert("RGB")) for out in outputs
              if (out["setting"], out["fold"]) == first]
    width = max(image.shape[1] for image in images)
    sheet = np.concatenate([np.pad(image, ((0, 2 * GAP_PIXELS), (0, width - image.shape[1]), (0, 0)))
                            for image in images], axis=0)
    with atomic_path(path, suffix=".png") as temporary:
        Image.fromarray(sheet).save(temporary, format="PNG")
    return Path(path)
