"""Stage ``experiment``: the paper's Table 3 or Table 2 in one command -- every stage, every fold and label-size setting, cached cell by cell, then the report.

``python -m fedsim_tf.main --stage=experiment --table=3|2 [--flagfile=flags/table3_demo.cfg]``

For each label-size setting (``--experiment_label_sizes``, repeatable: ``low``, ``high`` or
``SITE:L,...``; none = the run's ``--label_sizes`` / ``--label_size``) and each fold of ``--folds``, the
cells of :mod:`fedsim_tf.experiments.cells` run in order: the single-site simulation (``pretrain`` ->
``pretrain_gan`` learned and Fix-Mat -> ``semi`` -> ``synthesize`` per site -> ``segment`` rows Lower
Bound, Ours-Fix-Mat, Ours-Pre, Ours-Full, Upper Bound, batch ``--seg_batch_size``, ``--num_samples``
synthetic volumes) and the federated simulation (``federated`` -> ``synthesize --generator=federated`` per
site -> ``segment --mode=sim_fl`` -> ``--mode=direct_fl``, batch 3). The generator of the single-site rows
is each site's own (``--experiment_generators=single_site``, the paper) or one learned from every site's
labels (``pooled``). Every other setting is the stages' own flags.

``--table=2`` (the ablation, trained only on synthetic data): per setting and fold, on CT20 (the first site
when it is absent) with its own generator, ``pretrain`` -> ``pretrain_gan --material=fixmat`` -> four
Fix-Mat synthetic sets (random shape + GAN, + alpha blend, + Poisson blend, learned shape = Ours Fix-Mat)
-> ``segment --mode=synthetic_only`` on each (``--seg_steps`` steps, batch ``--seg_batch_size``).

Caching: a finished cell is recorded in ``<work_dir>/experiment/cells/<cell>.json`` (Table 2:
``experiment/table2_cells/``, since its "Ours Fix-Mat" segment cell trains otherwise than Table 3's; its settings'
fingerprint, wall time, results) and skipped by a rerun; a cell broken off is run again and resumes from
its stage's checkpoints. One progress line over the whole protocol (cells done / total, wall time of the
finished cells, ETA) comes before every cell.

Table 3's protocol also measures, per setting, fold and site, the novelty of the Ours-Full synthetic set
(nearest training volumes, paper Fig. 3: :mod:`fedsim_tf.experiments.table3_novelty`) and the
out-of-distribution Dice of the site's Upper Bound U-Net on its test volumes rendered by every site's GAN
(paper Sec. 3: :mod:`fedsim_tf.experiments.ood`).

Report (:mod:`fedsim_tf.experiments.table3_outputs`): ``<work_dir>/results/table3.json``,
``table3_experiment.md`` (with the paper's own Table 3 beside it, then the novelty and out-of-distribution
sections), ``table3_volumes.csv``, ``table3_boxplot_<site>.png``, ``table3_novelty_montage.png``,
``table3_manifest.json``; Table 2 (:mod:`fedsim_tf.experiments.table2_report`):
``table2.json``, ``table2_experiment.md``, ``table2_volumes.csv``, ``table2_manifest.json``.

Devices: Table 3's federated cells need one device per site, configured before TensorFlow initialises, so
:func:`run` configures them first thing (``--fed_devices``); Table 2 has no federated cell.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass

from absl import flags, logging

from fedsim_tf.data.splits import parse_label_sizes
from fedsim_tf.errors import UserInputError
from fedsim_tf.experiments import cells as protocol
from fedsim_tf.experiments import ood, table3_cells, table3_novelty
from fedsim_tf.experiments.ledger import Ledger
from fedsim_tf.experiments.manifest import build_manifest
from fedsim_tf.experiments.runner import run_cells
from fedsim_tf.experiments.table2_report import write_table2
from fedsim_tf.experiments.table3_outputs import write_table3
from fedsim_tf.stages import federated, federation_flags, inputs, pretrain, pretrain_gan, segment, semi, synthesize

TABLES: tuple[str, ...] = ("3", "2")
GENERATORS: tuple[str, ...] = ("single_site", "pooled")

flags.DEFINE_enum("table", "3", list(TABLES), "experiment: which of the paper's tables to reproduce.")
flags.DEFINE_multi_string("experiment_label_sizes", [], "experiment: a label-size setting (a --label_sizes value: "
                          "low, high or SITE:L,...); repeat for several (the paper: low and high). None: the run's "
                          "--label_sizes / --label_size.")
flags.DEFINE_enum("experiment_generators", "single_site", list(GENERATORS), "experiment: the generative model of "
                  "the single-site rows: each site's own (single_site, the paper) or one pooled over every site.")

FLAGS = flags.FLAGS

STAGE = "experiment"


@dataclass(frozen=True)
class ExperimentConfig:
    """Settings of the experiment stage.

    Attributes:
        table: the paper's table (``3`` or ``2``).
        stages: every stage's settings from the command line.
        settings: the label-size settings, in order (``""``: the run's own).
        single_site: each site's own generator for the single-site rows.
        command_line: the arguments the run was started with (for the manifest).
    """

    table: int
    stages: table3_cells.StageConfigs
    settings: tuple[str, ...]
    single_site: bool = True
    command_line: tuple[str, ...] = ()


def config_from_flags() -> ExperimentConfig:
    """Read and check the experiment flags and those of every stage it runs."""
    if FLAGS.single_site:
        raise UserInputError("--single_site: the experiment runs single-site and federated rows; choose the "
                             "single-site rows' generator with --experiment_generators instead")
    if FLAGS.site:
        raise UserInputError(f"--site={FLAGS.site}: the experiment covers every site; drop --site")
    for setting in FLAGS.experiment_label_sizes:
        try:
            parse_label_sizes(setting)
        except ValueError as error:
            raise UserInputError(f"--experiment_label_sizes={setting}: {error}") from error
    if len(set(FLAGS.experiment_label_sizes)) != len(FLAGS.experiment_label_sizes):
        raise UserInputError("--experiment_label_sizes: a setting is given twice")
    if FLAGS.table == "2" and FLAGS.experiment_generators != "single_site":
        raise UserInputError(f"--experiment_generators={FLAGS.experiment_generators}: Table 2 uses the site's own "
                             "generator; drop it with --table=2")
    if FLAGS.table == "3" and FLAGS.seg_pretrain_steps == 0:
        raise UserInputError("--seg_pretrain_steps=0: the synthetic rows and Direct-FL need pre-training steps")
    base_segment = segment.config_from_flags()
    stages = table3_cells.StageConfigs(
        pretrain=pretrain.config_from_flags(), pretrain_gan=pretrain_gan.config_from_flags(),
        semi=semi.config_from_flags(), federated=federated.config_from_flags(),
        synthesize=synthesize.config_from_flags(), segment=base_segment, seg_batch_size=FLAGS.seg_batch_size,
        seg_pretrain_steps=FLAGS.seg_pretrain_steps)
    return ExperimentConfig(table=int(FLAGS.table), stages=stages,
                            settings=tuple(FLAGS.experiment_label_sizes) or ("",),
                            single_site=FLAGS.experiment_generators == "single_site",
                            command_line=tuple(sys.argv[1:]))


def plan(config: ExperimentConfig) -> list[protocol.Cell]:
    """The protocol's cells (reads no volume)."""
    stages = config.stages
    sites = inputs.site_names(stages.common)
    if config.table == 2:
        return protocol.plan_table2(sites, config.settings, stages.segment.fold_indices())
    return protocol.plan_table3(sites, config.settings, stages.segment.fold_indices(), config.single_site)


def _ledger_folder(config: ExperimentConfig) -> str:
    return "cells" if config.table == 3 else f"table{config.table}_cells"


def _provenance(config: ExperimentConfig, folders: list[str], code: dict[str, object]) -> list[str]:
    common = config.stages.common
    own = common.label_sizes.level or ",".join(f"{site}:{size}" for site, size in common.label_sizes.per_site)
    settings = ", ".join(s or (f"--label_sizes={own}" if own else f"--label_size={common.label_size}")
                         for s in config.settings)
    data = ", ".join(folders) if common.data_dirs else f"phantom hospitals {', '.join(common.phantom_sites)} in {common.phantom_dir}"
    return [f"command: `python -m fedsim_tf.main {' '.join(config.command_line)}`",
            f"data: {data}", f"label-size settings: {settings}; folds: {config.stages.segment.fold_indices()}",
            f"sizes: volume {common.volume_size}^3, coarse {common.coarse_size}^3, {config.stages.synthesize.num_samples}"
            f" synthetic volumes per set, U-Net {config.stages.segment.training.unet} base "
            f"{config.stages.segment.training.base_filters}; seed {common.seed}; single-site rows' generator: "
            f"{'each site its own' if config.single_site else 'pooled over the sites'}",
            f"code: commit {code['commit']}{' with uncommitted changes' if code['dirty'] else ''}",
            f"every number is read from this run's cell records (`<work_dir>/{STAGE}/{_ledger_folder(config)}/`)"]


def _settings(config: ExperimentConfig, cell: protocol.Cell) -> object:
    """The JSON-able settings of ``cell`` (their fingerprint tells whether a recorded cell is finished)."""
    if cell.stage == "ood":
        return ood.settings(config.stages, cell, _generators(config))
    return dataclasses.asdict(table3_cells.stage_config(config.stages, cell))


def _execute(config: ExperimentConfig, cell: protocol.Cell) -> dict[str, object]:
    if cell.stage == "ood":
        return ood.execute(config.stages, cell, _generators(config))
    if cell.stage == "novelty":
        return table3_novelty.execute(config.stages, cell)
    return table3_cells.execute(config.stages, cell)


def _generators(config: ExperimentConfig) -> dict[str, str]:
    return protocol.generator_of(inputs.site_names(config.stages.common), config.single_site)


def run(config: ExperimentConfig) -> dict[str, object]:
    """Configure one device per site for Table 3 (TensorFlow loads here, first), run every unfinished cell,
    write the report; returns the report files' paths by name."""
    stages = config.stages
    common = stages.common
    if config.table == 3:
        federation_flags.site_devices(stages.federated.devices, inputs.site_count(common))
    cells = plan(config)
    ledger = Ledger(os.path.join(common.work_dir, STAGE, _ledger_folder(config)))
    records = run_cells(cells, ledger, lambda cell: _settings(config, cell), lambda cell: _execute(config, cell))
    rows = [row for cell in cells if cell.stage == "segment" for row in records[cell.key]["output"]["rows"]]
    folders = inputs.site_folders(common)
    manifest = build_manifest(config.table, config.command_line, config, folders, records)
    results, provenance = os.path.join(common.work_dir, "results"), _provenance(config, folders, manifest["code"])
    if config.table == 3:
        studies = {stage: [records[cell.key]["output"] for cell in cells if cell.stage == stage]
                   for stage in ("novelty", "ood")}
        paths = write_table3(results, rows, config.settings, provenance, manifest, studies["novelty"], studies["ood"])
    else:
        paths = write_table2(results, rows, config.settings, provenance, manifest)
    logging.info("experiment: Table %d -> %s", config.table, paths["markdown"])
    return paths
