"""``--stage=experiment`` refuses a bad command line with one line, before TensorFlow loads, and lists its
presets and flags in ``--help``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _main(args: list[str], no_tensorflow: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(no_tensorflow), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "fedsim_tf.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["--experiment_label_sizes=CT20:x"], "error: --experiment_label_sizes=CT20:x: 'CT20:x' is not SITE:L"),
    (["--experiment_label_sizes=low", "--experiment_label_sizes=low"],
     "error: --experiment_label_sizes: a setting is given twice"),
    (["--single_site"], "error: --single_site: the experiment runs single-site and federated rows"),
    (["--site=CT20"], "error: --site=CT20: the experiment covers every site; drop --site"),
    (["--table=4"], "error: flag --table=4: value should be one of <3|2>"),
    (["--table=2", "--experiment_generators=pooled"],
     "error: --experiment_generators=pooled: Table 2 uses the site's own generator; drop it with --table=2"),
])
def test_bad_command_lines_fail_with_one_line_before_tensorflow(args: list[str], message: str,
                                                                 no_tensorflow: Path) -> None:
    result = _main(["--flagfile=flags/table3_demo.cfg", *args], no_tensorflow)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_presets_nest_the_size_presets_and_help_lists_the_stage(no_tensorflow: Path) -> None:
    from fedsim_tf.cli import expand_flagfiles

    demo = expand_flagfiles(["--flagfile=" + str(ROOT / "flags" / "table3_demo.cfg")])
    paper = expand_flagfiles(["--flagfile=" + str(ROOT / "flags" / "table3_paper.cfg")])
    def last(flags: list[str], name: str) -> str:  # absl keeps the last value of a flag
        return [flag for flag in flags if flag.startswith(f"--{name}=")][-1].split("=", 1)[1]

    def every(flags: list[str], name: str) -> list[str]:
        return [flag.split("=", 1)[1] for flag in flags if flag.startswith(f"--{name}=")]

    # demo: a 32^3 grid (GAN slices 32 = 4 * 2^3, material grid 32 / 4), 1 fold, 10-volume phantom sites so
    # that the paper's low label sizes give L = 2; the demo's GLO steps, GANs and U-Nets trimmed to fit the hour
    assert (last(demo, "volume_size"), last(demo, "folds"), last(demo, "phantom_volumes")) == ("32", "1", "10")
    assert (last(demo, "gan_upsamplings"), last(demo, "coarse_size"), last(demo, "seg_patch_size")) == ("3", "8", "32")
    assert (last(demo, "pretrain_steps"), last(demo, "gan_steps"), last(demo, "fed_gan_steps")) == ("100", "150", "150")
    assert (last(demo, "seg_steps"), last(demo, "seg_pretrain_steps"), last(demo, "seg_base_filters")) == ("100", "50", "4")
    assert every(demo, "experiment_label_sizes") == ["low"] and last(demo, "experiment_generators") == "single_site"
    # paper: the paper's sizes, 5 folds, both label-size combinations
    assert (last(paper, "volume_size"), last(paper, "folds")) == ("128", "5")
    assert every(paper, "experiment_label_sizes") == ["low", "high"]
    result = _main(["--stage=experiment", "--help"], no_tensorflow)
    assert result.returncode == 0 and "--experiment_label_sizes" in result.stdout
