"""Flags shared by every stage (SPADE's "base options"); each stage module defines its own flags.

Presets live in ``flags/*.cfg`` (absl flagfiles); ``flags/demo.cfg`` is read when no ``--flagfile``
is given on the command line (see :mod:`fedsim_tf.main`). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from absl import flags

from fedsim_tf.cache_dir import cache_dir
from fedsim_tf.data.labels import ON_UNKNOWN, load_label_table
from fedsim_tf.data.layouts import LAYOUTS
from fedsim_tf.data.scanners import SITE_NAMES
from fedsim_tf.data.splits import SiteLabelSizes, parse_label_sizes
from fedsim_tf.errors import UserInputError
from fedsim_tf.losses.perceptual_spec import PERCEPTUAL_SPECS_HELP, check_perceptual_spec
from fedsim_tf.models.generative_model import GENERATOR_STAGES
from fedsim_tf.physics.simulated_scanner import MATERIALS

flags.DEFINE_string("stage", "pretrain", "Which stage to run (`python -m fedsim_tf.main --help` lists them).")
flags.DEFINE_multi_string(
    "data_dir", [], "A site folder of NIfTI volumes; repeat once per site. Empty: the built-in phantom hospitals."
)
flags.DEFINE_enum("layout", "mmwhs", list(LAYOUTS), "File layout of --data_dir folders.")
flags.DEFINE_string("label_table", "", "JSON label table of the --data_dir sites, overriding the layout's (format: "
                    "fedsim_tf/data/labels.py); empty = the layout's own table.")
flags.DEFINE_enum("on_unknown", "error", list(ON_UNKNOWN), "Label values missing from the label table (stray "
                  "values of public data sets): error (refuse the file) or background (treat them as background).")
flags.DEFINE_string("work_dir", "runs/demo", "Where checkpoints, logs, results and samples go.")
flags.DEFINE_integer("seed", 0, "Random seed of the whole run.")
flags.DEFINE_integer("fold", 0, "Cross-validation fold (0-based).", lower_bound=0)
flags.DEFINE_integer(
    "label_size", 0, "Labelled training volumes per site (the sites --label_sizes does not cover); 0 = the paper's "
    "smaller size (4 for CT20, 6 for CT34; other sites, or too few volumes for those: 30% of the fold's training "
    "volumes).",
    lower_bound=0,
)
flags.DEFINE_string(
    "label_sizes", "", "Labelled training volumes site by site, overriding --label_size where it applies: "
    "SITE:L,SITE:L,... for the sites named (e.g. CT20:4,CT34LC:6,CT34MC:6; the others keep --label_size), or "
    "low / high for every site: the paper's combinations (4, 6, 6) / (8, 12, 12) of (CT20, CT34LC, CT34MC), "
    "30% / 60% of the fold's training volumes for other sites (or too few volumes for those). Empty: --label_size "
    "everywhere.",
)
flags.DEFINE_integer("volume_size", 64, "Edge of the cubic label/CT grid in voxels (paper: 128).", lower_bound=8)
flags.DEFINE_float("fov_mm", 160.0, "Edge of the heart-centred field of view in mm (voxel size = fov_mm / volume_size).")
flags.DEFINE_integer("coarse_size", 16, "Edge of the coarse material/CT grid in voxels (paper: 16).", lower_bound=2)
flags.DEFINE_string(
    "phantom_dir", "", "Where the phantom hospitals are generated/cached; empty = <cache>/phantom_hospitals[_small]."
)
flags.DEFINE_bool("phantom_small", True, "Use the small phantom preset (64^3, few volumes) when no --data_dir is given.")
flags.DEFINE_list("phantom_sites", list(SITE_NAMES), "The phantom hospitals used (and generated) when no --data_dir "
                  "is given.")
flags.DEFINE_integer("phantom_workers", 2, "Processes that generate the phantom hospitals.", lower_bound=1)
flags.DEFINE_string("perceptual", "auto", "Perceptual-loss backbone of pretrain and pretrain_gan: "
                    f"{PERCEPTUAL_SPECS_HELP} (auto: vgg19 when its weights are in the Keras cache, else none).")
flags.DEFINE_integer(
    "phantom_volumes", 6, "Volumes per site of the small phantom preset (ignored without --phantom_small).", lower_bound=5
)
flags.DEFINE_string("site", "", "The site a stage works on (site name or --data_dir folder name): segment and "
                    "synthesize take one (empty = the first), pretrain_gan trains the GAN of each site (empty = all).")
flags.DEFINE_bool("single_site", False, "The generative model learns from --site alone (the paper's single-site "
                  "simulation) instead of every site's labelled volumes pooled; pretrain, pretrain_gan, semi and "
                  "synthesize find each other's runs by it.")
flags.DEFINE_enum("material", "learned", list(MATERIALS), "Material of the generated CT: learned (G_M's coarse map "
                  "through the CT simulator, paper 'Ours') or fixmat (the fixed attenuation atlas of the labels rendered "
                  "at full resolution, 'Ours-Fix-Mat'); pretrain_gan trains a GAN for this input, synthesize uses it.")
flags.DEFINE_enum("generator", "pretrain", list(GENERATOR_STAGES), "Which run of G_S/G_M sample and synthesize draw "
                  "from: pretrain (the paper's Ours-Pre), semi (after --stage=semi, Ours-Full) or federated (after "
                  "--stage=federated, with the site's federated GAN: Ours-Sim-FL).")
flags.DEFINE_integer("num_samples", 20, "Synthetic volumes that sample / synthesize write (paper: 20).", lower_bound=1)
flags.DEFINE_integer("checkpoint_every", 50, "Training stages: steps between checkpoints.", lower_bound=1)
flags.DEFINE_integer("log_every", 10, "Training stages: steps between TensorBoard scalars (images: 10x rarer).",
                     lower_bound=1)

FLAGS = flags.FLAGS


@dataclass(frozen=True)
class CommonConfig:
    """The shared settings of a run (see the flags above for meanings)."""

    data_dirs: tuple[str, ...]
    layout: str
    work_dir: str
    seed: int
    fold: int
    label_size: int
    volume_size: int
    fov_mm: float
    coarse_size: int
    phantom_dir: str
    phantom_small: bool
    phantom_volumes: int = 6
    label_table: str = ""
    on_unknown: str = "error"
    site: str = ""
    single_site: bool = False
    phantom_sites: tuple[str, ...] = SITE_NAMES
    phantom_workers: int = 2
    label_sizes: SiteLabelSizes = SiteLabelSizes()


def common_config_from_flags() -> CommonConfig:
    """Read and check the shared flags; raises :class:`UserInputError` naming the bad flag."""
    for folder in FLAGS.data_dir:
        if not os.path.isdir(folder):
            raise UserInputError(f"--data_dir={folder}: no such folder")
    unknown = sorted(set(FLAGS.phantom_sites) - set(SITE_NAMES))
    if unknown or not FLAGS.phantom_sites:
        raise UserInputError(f"--phantom_sites={','.join(FLAGS.phantom_sites)}: expected some of {', '.join(SITE_NAMES)}")
    try:
        label_sizes = parse_label_sizes(FLAGS.label_sizes)
    except ValueError as error:
        raise UserInputError(f"--label_sizes={FLAGS.label_sizes}: {error}") from error
    if FLAGS.label_table:
        load_label_table(FLAGS.label_table)  # DataError naming the file when it is missing or malformed
    if not FLAGS.fov_mm > 0:
        raise UserInputError(f"--fov_mm={FLAGS.fov_mm} must be positive")
    if FLAGS.volume_size % FLAGS.coarse_size:
        raise UserInputError(
            f"--volume_size={FLAGS.volume_size} must be a multiple of --coarse_size={FLAGS.coarse_size}"
        )
    small = FLAGS.phantom_small
    suffix = f"_small{FLAGS.phantom_volumes}" if small else ""
    phantom_dir = FLAGS.phantom_dir or os.path.join(cache_dir(), "phantom_hospitals" + suffix)
    return CommonConfig(
        data_dirs=tuple(FLAGS.data_dir),
        layout=FLAGS.layout,
        work_dir=FLAGS.work_dir,
        seed=FLAGS.seed,
        fold=FLAGS.fold,
        label_size=FLAGS.label_size,
        volume_size=FLAGS.volume_size,
        fov_mm=FLAGS.fov_mm,
        coarse_size=FLAGS.coarse_size,
        phantom_dir=phantom_dir,
        phantom_small=small,
        phantom_volumes=FLAGS.phantom_volumes,
        label_table=FLAGS.label_table,
        on_unknown=FLAGS.on_unknown,
        site=FLAGS.site,
        single_site=FLAGS.single_site,
        phantom_sites=tuple(FLAGS.phantom_sites),
        phantom_workers=FLAGS.phantom_workers,
        label_sizes=label_sizes,
    )


def perceptual_from_flags() -> str:
    """The checked ``--perceptual`` choice (:mod:`fedsim_tf.losses.perceptual_spec`)."""
    return check_perceptual_spec(FLAGS.perceptual)
