"""fedsim-tf's one entry point: ``python -m fedsim_tf.main --stage=<stage> [--flagfile=flags/paper.cfg]``.

Stages are the paper's, in pipeline order (:data:`STAGES`). Each stage module defines its own flags
at its top and exposes ``config_from_flags()`` and ``run(config)``; stage modules import TensorFlow
only inside ``run``, so the command line is parsed and checked before TensorFlow loads
(:mod:`fedsim_tf.cli`). Without ``--flagfile`` the CPU-sized preset ``flags/demo.cfg`` is read first,
so flags given on the command line still override it. Bad flags or inputs end with one line on
stderr and exit code 2. ``--help`` lists the stages, ``--stage=NAME --help`` one stage's flags.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from absl import flags

from fedsim_tf import cli, options
from fedsim_tf.errors import UserInputError
from fedsim_tf.stages import experiment, federated, pretrain, pretrain_gan, sample, segment, semi, synthesize

FLAGS = flags.FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESET_DIR = os.path.join(ROOT, "flags")
DEFAULT_FLAGFILE = os.path.join(PRESET_DIR, "demo.cfg")
HELP_ARGS: tuple[str, ...] = ("--help", "-help", "-h", "--helpshort", "-helpshort", "-?")
TITLE = "fedsim-tf: Federated Simulation for Medical Imaging (Li et al., MICCAI 2020) in TensorFlow 2 / Keras 3."

# The paper's stages in pipeline order: the module of a built stage, or what a planned one will do.
STAGES: dict[str, ModuleType | str] = {
    "pretrain": pretrain,
    "pretrain_gan": pretrain_gan,
    "semi": semi,
    "federated": federated,
    "synthesize": synthesize,
    "sample": sample,
    "segment": segment,
    "experiment": experiment,
}


def stage_module(name: str) -> ModuleType:
    """The module of a built stage.

    Raises:
        UserInputError: an unknown or not yet built stage, listing the valid ones.
    """
    module = STAGES.get(name)
    if isinstance(module, ModuleType):
        return module
    built = ", ".join(n for n, m in STAGES.items() if isinstance(m, ModuleType))
    planned = ", ".join(n for n, m in STAGES.items() if not isinstance(m, ModuleType))
    state = "is not built yet" if name in STAGES else "is not a stage"
    raise UserInputError(f"--stage={name!r} {state}; valid stages: {built}" +
                         (f" (not built yet: {planned})" if planned else ""))


def _summary(stage: ModuleType | str) -> str:
    if isinstance(stage, str):
        return f"(not built yet) {stage}"
    first = " ".join((stage.__doc__ or "").strip().split("\n\n")[0].split())  # the first paragraph
    return first.split(": ", 1)[-1]


def _presets() -> list[str]:
    lines = []
    for name in sorted(os.listdir(PRESET_DIR)):
        if name.endswith(".cfg"):
            with open(os.path.join(PRESET_DIR, name), encoding="utf-8") as handle:
                first = handle.readline().lstrip("#/ ").strip()
            lines.append(f"  flags/{name:<18} {first}")
    return lines


def overview() -> str:
    """The text of ``--help``: stages in pipeline order, presets, where the flags are listed."""
    width = max(len(name) for name in STAGES)
    return "\n".join([
        TITLE,
        "",
        "usage: python -m fedsim_tf.main --stage=STAGE [--flagfile=PRESET] [--flag=value ...]",
        "",
        "Stages, in pipeline order:",
        *(f"  {name:<{width}}  {_summary(stage)}" for name, stage in STAGES.items()),
        "",
        "Presets (absl flagfiles; flags/demo.cfg is read when no --flagfile is given):",
        *_presets(),
        "",
        "Flags of one stage: python -m fedsim_tf.main --stage=STAGE --help    every flag: --helpfull",
    ])


def stage_help(name: str) -> str:
    """The text of ``--stage=NAME --help``: the stage's docstring and its flags, the flags of the flag
    modules it uses (e.g. :mod:`fedsim_tf.stages.glo_flags`), then the flags shared by every stage."""
    module = stage_module(name)
    used = [m for m in vars(module).values() if isinstance(m, ModuleType) and m is not options
            and m.__name__.startswith("fedsim_tf.")
            and FLAGS.get_flags_for_module(m.__name__)]
    sections = [(f"Flags of --stage={name} ({module.__name__}):", module)]
    sections += [(f"Flags of {m.__name__}:", m) for m in used]
    sections += [(f"Flags shared by every stage ({options.__name__}):", options)]
    text = [(module.__doc__ or "").strip()]
    for title, flag_module in sections:
        text += ["", title, FLAGS.module_help(flag_module)]
    return "\n".join(text)


def help_text(argv: list[str]) -> str:
    """``--help`` output for a command line (one stage's when it names ``--stage``)."""
    stages = [arg.split("=", 1)[1] for arg in cli.expand_flagfiles(argv[1:]) if arg.startswith("--stage=")]
    return stage_help(stages[-1]) if stages else overview()


def main(argv: list[str]) -> None:
    del argv
    module = stage_module(FLAGS.stage)
    module.run(module.config_from_flags())


def with_default_flagfile(argv: list[str]) -> list[str]:
    """``argv`` with ``--flagfile=flags/demo.cfg`` inserted first when it names no flagfile."""
    if any(arg.startswith(cli.FLAGFILE_PREFIXES) for arg in argv[1:]):
        return list(argv)
    return [argv[0], f"--flagfile={DEFAULT_FLAGFILE}", *argv[1:]]


def run(argv: list[str] | None = None) -> None:
    """Console entry point."""
    argv = list(sys.argv if argv is None else argv)
    if any(arg in HELP_ARGS for arg in argv[1:]):
        try:
            print(help_text(argv))
        except UserInputError as error:
            cli.fail(str(error))
        sys.exit(0)
    cli.run(main, with_default_flagfile(argv))


if __name__ == "__main__":
    run()
