"""What every stage reads first: the sites (users' folders or the phantom hospitals), their
cross-validation splits and label sizes (``--label_sizes`` per site, else ``--label_size``), then their
preprocessed volumes. The one place that turns :class:`~fedsim_tf.options.CommonConfig` into data; plain
Python, NumPy and SciPy (no TensorFlow), so a bad folder or label size is reported before TensorFlow loads.

Splits (:mod:`fedsim_tf.data.splits`) are a function of the site's name and its case list only -- not
of ``--seed`` or ``--work_dir`` -- so every stage and every run uses the same split of a site.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsim_tf.cache_dir import cache_dir
from fedsim_tf.data.case import Case
from fedsim_tf.data.errors import DataError
from fedsim_tf.data.labels import LabelTable, default_table, load_label_table
from fedsim_tf.data.layouts import find_cases
from fedsim_tf.data.phantoms import phantom_folders
from fedsim_tf.data.preprocess import PreprocessConfig
from fedsim_tf.data.site import Site, load_site
from fedsim_tf.data.splits import fold_split, label_sizes, make_splits
from fedsim_tf.errors import UserInputError
from fedsim_tf.models.generative_model import TrainingSet
from fedsim_tf.options import CommonConfig

SPLIT_SEED = 0  # one split per site and case list, independent of the run's --seed


def preprocess_config(common: CommonConfig) -> PreprocessConfig:
    """Heart-centred ``volume_size``^3 grid over ``fov_mm`` (isotropic voxels) and its coarse target."""
    return PreprocessConfig(
        spacing_mm=common.fov_mm / common.volume_size,
        grid_size=common.volume_size,
        coarse_size=common.coarse_size,
    )


def site_folders(common: CommonConfig) -> list[str]:
    """The ``--data_dir`` folders, or the phantom hospitals (generated on first use)."""
    if common.data_dirs:
        return list(common.data_dirs)
    return [str(folder) for folder in phantom_folders(common)]


def site_names(common: CommonConfig) -> list[str]:
    """The names of the sites the command line names (``--data_dir`` folder names or ``--phantom_sites``),
    without reading or generating any of them."""
    if common.data_dirs:
        return [Path(folder).resolve().name for folder in common.data_dirs]
    return list(common.phantom_sites)


def site_count(common: CommonConfig) -> int:
    """How many sites the command line names, without reading or generating any of them."""
    return len(site_names(common))


def _layout_and_table(common: CommonConfig) -> tuple[str, LabelTable]:
    """The layout and label table of the sites (``--label_table`` applies to ``--data_dir`` sites)."""
    if not common.data_dirs:
        return "mmwhs", default_table("mmwhs")
    table = load_label_table(common.label_table) if common.label_table else default_table(common.layout)
    return common.layout, table


@dataclass(frozen=True)
class SitePlan:
    """A site before any volume is read: its folder, split and label size.

    Attributes:
        name: site name (the folder's name).
        folder: the site folder.
        splits: the split record of :func:`fedsim_tf.data.splits.make_splits`.
        label_size: ``L``, labelled training volumes per fold.
    """

    name: str
    folder: str
    splits: dict[str, Any]
    label_size: int

    @property
    def n_folds(self) -> int:
        return len(self.splits["folds"])

    @property
    def n_train(self) -> int:
        """Training volumes per fold (every fold has the same number)."""
        return len(self.splits["folds"][0]["train"])

    def fold_ids(self, fold: int, label_size: int | None = None) -> dict[str, list[str]]:
        """Case ids of ``fold`` (``train_labelled``, ``train_unlabelled``, ``val``, ``test``) with
        ``label_size`` labelled training volumes (default the site's).

        Raises:
            UserInputError: naming ``--fold`` or ``--label_size`` and the largest valid value.
        """
        if not 0 <= fold < self.n_folds:
            raise UserInputError(f"--fold={fold}: site {self.name} has {self.n_folds} folds; the largest valid "
                                 f"--fold is {self.n_folds - 1}")
        return fold_split(self.splits, fold, self.label_size if label_size is None else label_size)


def plan_site(folder: str, common: CommonConfig) -> SitePlan:
    """Split and label size of one site folder, from its file names only.

    The label size ``L``: the site's entry of ``--label_sizes`` when it covers the site (its level, or the
    site's name among its ``SITE:L`` pairs), else ``--label_size``, else (0) the site's smaller
    :func:`~fedsim_tf.data.splits.label_sizes`.

    Raises:
        DataError: naming problems of the folder (one line each).
        UserInputError: a ``--label_size`` or ``--label_sizes`` entry larger than the site allows (naming the
            largest valid value), or too few labelled volumes to split.
    """
    layout, _ = _layout_and_table(common)
    files, problems = find_cases(folder, layout)
    if problems:
        raise DataError(problems)
    name = Path(folder).resolve().name
    labelled = [f.case_id for f in files if f.labelled]
    try:
        splits = make_splits([f.case_id for f in files], name, labelled, seed=SPLIT_SEED)
    except ValueError as error:
        raise UserInputError(f"site {name} ({folder}): {error}") from error
    n_train = len(splits["folds"][0]["train"])
    chosen = common.label_sizes.size(name, n_train)
    label_size = chosen or common.label_size or label_sizes(name, n_train)[0]
    if label_size > n_train:
        flag = f"--label_sizes: {name}:{label_size}" if chosen else f"--label_size={label_size}"
        raise UserInputError(
            f"{flag}: site {name} ({folder}) has {len(labelled)} labelled volumes, {n_train} of them for training "
            f"per fold; the largest valid {'L of ' + name if chosen else '--label_size'} is {n_train}"
        )
    return SitePlan(name, str(folder), splits, label_size)


def plan_sites(common: CommonConfig) -> list[SitePlan]:
    """:func:`plan_site` of every site (the phantom hospitals are generated first when missing).

    Raises:
        UserInputError: ``--label_sizes`` names a site that is not among the sites (checked first).
    """
    names = site_names(common)
    unknown = [site for site in common.label_sizes.sites if site not in names]
    if unknown:
        raise UserInputError(f"--label_sizes: {', '.join(unknown)} not among the sites ({', '.join(names)})")
    return [plan_site(folder, common) for folder in site_folders(common)]


def pick_site(plans: list[SitePlan], name: str) -> SitePlan:
    """The site called ``name`` (site or folder name), or the first when ``name`` is empty.

    Raises:
        UserInputError: naming ``--site`` and the available sites.
    """
    if not name:
        return plans[0]
    for plan in plans:
        if name in (plan.name, os.path.basename(os.path.normpath(plan.folder))):
            return plan
    raise UserInputError(f"--site={name}: no such site; available: {', '.join(p.name for p in plans)}")


def _load(folder: str, common: CommonConfig, layout: str, table: LabelTable, on_unknown: str) -> Site:
    return load_site(folder, layout, preprocess_config(common), table=table, on_unknown=on_unknown,
                     cache_dir=os.path.join(cache_dir(), "preprocessed"))


def load_plan(plan: SitePlan, common: CommonConfig) -> Site:
    """The preprocessed volumes of a planned site (cached under the project cache)."""
    layout, table = _layout_and_table(common)
    return _load(plan.folder, common, layout, table, common.on_unknown)


def load_synthetic(folder: str, common: CommonConfig) -> Site:
    """A folder of synthetic volumes (MM-WHS layout and codes, as ``--stage=synthesize`` writes them),
    preprocessed like the sites."""
    return _load(folder, common, "mmwhs", default_table("mmwhs"), "error")


def fold_cases(site: Site, plan: SitePlan, fold: int) -> dict[str, list[Case]]:
    """The cases of one fold: ``train_labelled``, ``train_unlabelled``, ``val``, ``test``."""
    return {part: [site.cases[case_id] for case_id in ids] for part, ids in plan.fold_ids(fold).items()}


def generator_sites(plans: list[SitePlan], common: CommonConfig) -> list[SitePlan]:
    """The sites the generative model learns from: every site, or with ``--single_site`` only ``--site``
    (the first site when ``--site`` is empty)."""
    return [pick_site(plans, common.site)] if common.single_site else plans


def training_set(plans: list[SitePlan], common: CommonConfig) -> TrainingSet:
    """What the generative model of this command line trains on: ``--fold``, ``--seed`` and the labelled
    training cases of each of its sites (:func:`generator_sites`); the key of the generator run and of
    everything built on it."""
    return TrainingSet(common.fold, common.seed, {plan.name: plan.fold_ids(common.fold)["train_labelled"]
                                                  for plan in generator_sites(plans, common)})
