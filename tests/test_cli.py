"""Every entry point's command line: one ``error:`` line and exit code 2 for bad input, before
TensorFlow loads; presets that work from any folder; ``--help`` per stage."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedsim_tf import cli
from fedsim_tf.errors import UserInputError

ROOT = Path(__file__).resolve().parents[1]


def _run(module: str, *args: str, cwd: Path = ROOT, pythonpath: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    # TF_ENABLE_ONEDNN_OPTS=1 makes TensorFlow print its oneDNN start-up line on every x86-64 CPU.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, (*pythonpath, ROOT))), "TF_ENABLE_ONEDNN_OPTS": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.parametrize("module, args, message", [
    ("fedsim_tf.main", ["--stage=nope"], "error: --stage='nope' is not a stage; valid stages: pretrain"),
    ("fedsim_tf.main", ["--stage=federated", "--single_site"], "error: --single_site: the federated stage learns "
     "from every site"),
    ("fedsim_tf.main", ["--data_dir=/no/such/folder"], "error: --data_dir=/no/such/folder: no such folder"),
    ("fedsim_tf.main", ["--latent_dim=-3"], "error: flag --latent_dim=-3: -3 is not a positive integer"),
    ("fedsim_tf.main", ["--no_such_flag=1"], "error: Unknown command line flag 'no_such_flag'"),
    ("fedsim_tf.main", ["--flagfile=/no/such.cfg"], "error: --flagfile=/no/such.cfg: cannot read it"),
    ("fedsim_tf.main", ["--label_table=/no/such.json"], "error: /no/such.json: cannot read label table"),
    ("fedsim_tf.main", ["--perceptual=/no/such.h5"], "error: --perceptual=/no/such.h5: no such weights file"),
    ("fedsim_tf.main", ["--stage=segment", "--mode=finetune"], "error: --mode=finetune needs --synthetic_dir"),
    ("fedsim_tf.main", ["--stage=pretrain", "extra"], "error: unexpected arguments: extra"),
    ("fedsim_tf.main", ["--label_sizes=CT20:x"], "error: --label_sizes=CT20:x: 'CT20:x' is not SITE:L; expected low, "
     "high or SITE:L,SITE:L,... with L a positive integer (e.g. CT20:4,CT34LC:6,CT34MC:6)"),
    ("fedsim_tf.main", ["--label_sizes=CT20:4,CT20:8"], "error: --label_sizes=CT20:4,CT20:8: site CT20 is named twice"),
    ("fedsim_tf.main", ["--label_sizes=CT20:4,XX:6"], "error: --label_sizes: XX not among the sites (CT20, CT34LC, "
     "CT34MC)"),
    ("fedsim_tf.main", ["--stage=segment", "--phantom_sites=CT20", "--label_sizes=CT34MC:6"], "error: --label_sizes: "
     "CT34MC not among the sites (CT20)"),
    ("fedsim_tf.data.inspect", [], "error: --data_dir: give the site folder to check"),
    ("fedsim_tf.data.inspect", ["--data_dir=/no/such/folder"], "error: /no/such/folder: folder does not exist"),
    ("fedsim_tf.data.inspect", ["--layout=bogus", "--data_dir=/tmp"], "error: flag --layout=bogus: value should be"),
    ("fedsim_tf.data.phantoms", ["--phantom_sites=XX"], "error: --phantom_sites=XX: expected some of CT20, CT34LC"),
    ("fedsim_tf.data.phantoms", ["--phantom_workers=0"], "error: flag --phantom_workers=0: 0 is not a positive"),
    ("pyronn_ops.examples.fdk", ["--size=8"], "error: flag --size=8: 8 is not integer >= 16"),
    ("pyronn_ops.examples.fdk", ["--out=/no/such/folder/x.png"], "error: --out=/no/such/folder/x.png: its folder "),
    ("pyronn_ops.examples.fdk", ["extra"], "error: unexpected arguments: extra"),
])
def test_bad_command_lines_end_with_one_line_and_exit_code_2_without_tensorflow(
    tmp_path: Path, no_tensorflow: Path, module: str, args: list[str], message: str
) -> None:
    result = _run(module, f"--work_dir={tmp_path}", *args, pythonpath=(no_tensorflow,)) \
        if module == "fedsim_tf.main" else _run(module, *args, pythonpath=(no_tensorflow,))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert result.stdout == ""


def test_nested_flagfiles_resolve_relative_to_the_file_that_names_them(tmp_path: Path) -> None:
    presets = tmp_path / "presets"
    (presets / "base").mkdir(parents=True)
    (presets / "base" / "sizes.cfg").write_text("# base sizes\n--volume_size=32\n\n// comment\n--coarse_size=8\n")
    (presets / "mine.cfg").write_text("--flagfile=base/sizes.cfg\n--volume_size=48\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)  # the command line's own --flagfile is relative to the working directory
    try:
        assert cli.expand_flagfiles(["--seed=1", "--flagfile=../presets/mine.cfg", "--fold=2"]) == [
            "--seed=1", "--volume_size=32", "--coarse_size=8", "--volume_size=48", "--fold=2"]
    finally:
        os.chdir(ROOT)
    (presets / "loop.cfg").write_text("--flagfile=loop.cfg\n")
    with pytest.raises(UserInputError, match="includes itself"):
        cli.expand_flagfiles([f"--flagfile={presets / 'loop.cfg'}"])


def test_the_presets_parse_from_any_working_directory(tmp_path: Path, no_tensorflow: Path) -> None:
    for preset in ("demo.cfg", "paper.cfg"):
        result = _run("fedsim_tf.main", f"--flagfile={ROOT / 'flags' / preset}", "--stage=nope", cwd=tmp_path,
                      pythonpath=(no_tensorflow,))
        # The preset was read completely: the only complaint is the stage.
        assert result.returncode == 2 and result.stderr.startswith("error: --stage='nope' is not a stage"), result.stderr


def test_help_lists_the_stages_in_pipeline_order_and_one_stage_flags(no_tensorflow: Path) -> None:
    overview = _run("fedsim_tf.main", "--help", pythonpath=(no_tensorflow,))
    assert overview.returncode == 0, overview.stderr
    stages = [line.split()[0] for line in overview.stdout.split("Stages, in pipeline order:\n")[1].split("\n\n")[0]
              .splitlines()]
    assert stages == ["pretrain", "pretrain_gan", "semi", "federated", "synthesize", "sample", "segment", "experiment"]
    assert "flags/demo.cfg" in overview.stdout and "flags/paper.cfg" in overview.stdout
    segment = _run("fedsim_tf.main", "--stage=segment", "--help", pythonpath=(no_tensorflow,))
    assert segment.returncode == 0, segment.stderr
    assert "--seg_steps" in segment.stdout and "--data_dir" in segment.stdout
    for other in ("--latent_dim", "--ngf", "--semi_steps", "--fed_pretrain_rounds"):
        assert other not in segment.stdout  # other stages' flags
