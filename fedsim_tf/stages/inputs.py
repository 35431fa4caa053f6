"""What every stage reads first: the sites (users' folders or the phantom hospitals), preprocessed,
and their cross-validation splits. The one place that turns :class:`CommonConfig` into data."""

from __future__ import annotations

import os

from fedsim_tf.data.case import Case
from fedsim_tf.data.phantoms import ensure_phantom_hospitals
from fedsim_tf.data.preprocess import PreprocessConfig
from fedsim_tf.data.site import Site, load_site
from fedsim_tf.data.splits import fold_split, label_sizes, load_or_create_splits
from fedsim_tf.cache_dir import cache_dir
from fedsim_tf.options import CommonConfig

PHANTOM_SEED = 0  # the embedded data set is one fixed draw, independent of the run's --seed


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
    folders = ensure_phantom_hospitals(
        common.phantom_dir,
        small=common.phantom_small,
        seed=PHANTOM_SEED,
        workers=2,
        volumes_per_site=common.phantom_volumes if common.phantom_small else None,
    )
    return [str(folder) for folder in folders]


def load_sites(common: CommonConfig) -> list[Site]:
    """Every site, preprocessed with :func:`preprocess_config` (cached under the project cache)."""
    config = preprocess_config(common)
    layout = common.layout if common.data_dirs else "mmwhs"
    return [
        load_site(folder, layout, config, cache_dir=os.path.join(cache_dir(), "preprocessed"))
        for folder in site_folders(common)
    ]


def splits_for(site: Site, common: CommonConfig) -> dict:
    """The site's split record, created once under ``<work_dir>/splits/<site>.json`` and reused."""
    path = os.path.join(common.work_dir, "splits", f"{site.name}.json")
    return load_or_create_splits(path, list(site.cases), site.name, labelled=site.labelled_ids, seed=common.seed)


def label_size_for(site: Site, splits: dict, common: CommonConfig) -> int:
    """``--label_size``, or the paper's smaller size for this site (0 = default)."""
    if common.label_size:
        return common.label_size
    n_train = len(splits["folds"][0]["train"])
    return label_sizes(site.name, n_train)[0]


def fold_cases(site: Site, common: CommonConfig, fold: int | None = None) -> dict[str, list[Case]]:
    """The cases of one fold (default ``--fold``): ``train_labelled``, ``train_unlabelled``, ``val``, ``test``."""
    splits = splits_for(site, common)
    ids = fold_split(splits, common.fold if fold is None else fold, label_size_for(site, splits, common))
    return {part: [site.cases[case_id] for case_id in case_ids] for part, case_ids in ids.items()}
