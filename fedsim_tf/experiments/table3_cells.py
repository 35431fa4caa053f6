"""How a Table 3 or Table 2 cell (:mod:`fedsim_tf.experiments.cells`) becomes a stage call: its stage settings,
derived from the command line's settings of every stage by :func:`dataclasses.replace` (fold, label sizes, site,
generator; a Table 2 row's shape, blend and ``segment --mode=synthetic_only``), and what its run leaves for the
report.

A ``segment`` cell's output is its rows: per site, the row's method, label size, fold and per-volume
test Dice (``null`` for a volume with an empty ground truth).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from fedsim_tf.data.splits import parse_label_sizes
from fedsim_tf.experiments.cells import POOLED, SEGMENT_METHODS, TABLE2_ROWS, Cell
from fedsim_tf.options import CommonConfig
from fedsim_tf.stages import federated, inputs, pretrain, pretrain_gan, segment, semi, synthesize

MODE_OF_METHOD: dict[str, str] = {method: mode for mode, method in SEGMENT_METHODS.items()}
"""Table 3 row -> ``segment --mode`` (the synthetic rows: ``finetune``; Table 2's rows: ``synthetic_only``)."""


@dataclass(frozen=True)
class StageConfigs:
    """The settings of every stage as the command line gives them; cells vary fold, label sizes and site.

    Attributes:
        seg_batch_size: ``--seg_batch_size`` of the single-site rows (the federated rows train with
            :data:`fedsim_tf.stages.segment.FEDERATED_BATCH_SIZE`).
        seg_pretrain_steps: ``--seg_pretrain_steps`` (synthetic pre-training steps; Direct-FL's rounds).
    """

    pretrain: pretrain.PretrainConfig
    pretrain_gan: pretrain_gan.PretrainGANConfig
    semi: semi.SemiConfig
    federated: federated.FederatedConfig
    synthesize: synthesize.SynthesizeConfig
    segment: segment.SegmentConfig
    seg_batch_size: int
    seg_pretrain_steps: int

    @property
    def common(self) -> CommonConfig:
        return self.pretrain.common


def cell_common(common: CommonConfig, cell: Cell) -> CommonConfig:
    """The shared settings of ``cell``: its fold, label sizes (its setting; the command line's when empty),
    site, and ``single_site`` when its generator is one site's."""
    single = cell.stage != "segment" and cell.generator not in ("", POOLED, "federated")
    label_sizes = parse_label_sizes(cell.setting) if cell.setting else common.label_sizes
    return dataclasses.replace(common, fold=cell.fold, label_sizes=label_sizes, single_site=single,
                               site=cell.site or (cell.generator if single else ""))


def synthesize_config(configs: StageConfigs, cell: Cell) -> synthesize.SynthesizeConfig:
    """``synthesize``'s settings of the synthetic set ``cell`` is about (its site, generator, source stage,
    material; a Table 2 row's shape and blend)."""
    generator_cell = dataclasses.replace(cell, stage="synthesize")
    shape, blend = TABLE2_ROWS.get(cell.method, ("learned", "none"))
    return dataclasses.replace(configs.synthesize, common=cell_common(configs.common, generator_cell),
                               generator=cell.source, material=cell.material, shape=shape, blend=blend)


def synthetic_folder(configs: StageConfigs, cell: Cell) -> str:
    """The synthetic set a fine-tuned (or Table 2) row of ``cell``'s site trains on (``--stage=synthesize``'s
    folder)."""
    config = synthesize_config(configs, cell)
    plans = inputs.plan_sites(config.common)
    name = inputs.training_set(plans, config.common).name
    return synthesize.output_dir(config.common, name, cell.site, config.variant)


def segment_config(configs: StageConfigs, cell: Cell) -> segment.SegmentConfig:
    """``segment``'s settings of a row's fold: ``--mode`` of the row, batch 3 in the federated comparison,
    synthetic pre-training steps where the mode pre-trains."""
    mode = "synthetic_only" if cell.method in TABLE2_ROWS else MODE_OF_METHOD.get(cell.method, "finetune")
    training = segment.mode_training(mode, dataclasses.replace(
        configs.segment.training, batch_size=configs.seg_batch_size, pretrain_steps=configs.seg_pretrain_steps))
    return dataclasses.replace(configs.segment, common=cell_common(configs.common, cell), mode=mode, folds=1,
                               training=training,
                               synthetic_dir=synthetic_folder(configs, cell) if mode in segment.SYNTHETIC_MODES
                               else "")


def stage_config(configs: StageConfigs, cell: Cell) -> Any:
    """The stage settings ``cell`` runs with."""
    common = cell_common(configs.common, cell)
    if cell.stage == "pretrain_gan":
        return dataclasses.replace(configs.pretrain_gan, common=common, material=cell.material)
    if cell.stage in ("synthesize", "novelty"):
        return synthesize_config(configs, cell)
    if cell.stage == "segment":
        return segment_config(configs, cell)
    return dataclasses.replace(getattr(configs, cell.stage), common=common)


def _dice(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def segment_rows(cell: Cell, records: dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a ``segment`` cell from its run record(s) (:mod:`fedsim_tf.evaluation.report`)."""
    rows = []
    for record in records if isinstance(records, list) else [records]:
        for entry in record["folds"]:
            if entry["fold"] == cell.fold:
                rows.append({"method": cell.method, "setting": cell.setting, "site": record["site"],
                             "label_size": int(record["label_size"]), "fold": cell.fold,
                             "test_dice": {case: _dice(v) for case, v in entry["test_dice"].items()}})
    return rows


def execute(configs: StageConfigs, cell: Cell) -> dict[str, Any]:
    """Run ``cell``'s stage; returns its output for the ledger (``rows`` of a ``segment`` cell, ``folder``
    of a synthetic set)."""
    config = stage_config(configs, cell)
    module = {"pretrain": pretrain, "pretrain_gan": pretrain_gan, "semi": semi, "federated": federated,
              "synthesize": synthesize, "segment": segment}[cell.stage]
    result = module.run(config)
    if cell.stage == "segment":
        return {"rows": segment_rows(cell, result)}
    return {"folder": result} if cell.stage == "synthesize" else {}
