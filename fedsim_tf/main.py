"""fedsim-tf's one entry point: ``python -m fedsim_tf.main --stage=<stage> [--flagfile=flags/paper.cfg]``.

Stages are the paper's. Each stage module defines its own flags at its top and exposes
``config_from_flags()`` and ``run(config)``. Without ``--flagfile`` the CPU-sized preset
``flags/demo.cfg`` is read first, so flags given on the command line still override it.
Bad flags or inputs end with one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from absl import app, flags, logging

from fedsim_tf import options  # noqa: F401  (importing it defines the shared flags)
from fedsim_tf.errors import UserInputError
from fedsim_tf.stages import pretrain, sample
from fedsim_tf.stages import segment

FLAGS = flags.FLAGS

DEFAULT_FLAGFILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flags", "demo.cfg")

# Stages of the paper, in pipeline order: built ones map to their module.
STAGES: dict[str, ModuleType] = {"pretrain": pretrain, "sample": sample, "segment": segment}
PLANNED_STAGES: tuple[str, ...] = ("pretrain", "pretrain_gan", "semi", "federated", "synthesize", "sample", "segment")


def _stage_module(name: str) -> ModuleType:
    if name in STAGES:
        return STAGES[name]
    built = ", ".join(STAGES) or "none yet"
    planned = ", ".join(s for s in PLANNED_STAGES if s not in STAGES)
    raise UserInputError(f"--stage={name!r} is not available; valid stages: {built} (not built yet: {planned})")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise UserInputError(f"unexpected arguments: {' '.join(argv[1:])}")
    module = _stage_module(FLAGS.stage)
    module.run(module.config_from_flags())


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing whose errors are one line and exit code 2."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        _fail(str(error))
    return []


def _main_with_errors(argv: list[str]) -> None:
    try:
        main(argv)
    except UserInputError as error:
        logging.flush()
        _fail(str(error))


def with_default_flagfile(argv: list[str]) -> list[str]:
    """``argv`` with ``--flagfile=flags/demo.cfg`` inserted first when it names no flagfile."""
    if any(arg.startswith(("--flagfile", "-flagfile")) for arg in argv[1:]):
        return list(argv)
    return [argv[0], f"--flagfile={DEFAULT_FLAGFILE}", *argv[1:]]


def run() -> None:
    """Console entry point."""
    app.run(_main_with_errors, argv=with_default_flagfile(sys.argv), flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
