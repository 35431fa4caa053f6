"""The command-line plumbing shared by every fedsim_tf entry point: absl flags, presets, one error path.

The entry points (``python -m fedsim_tf.main``, ``python -m fedsim_tf.data.inspect``,
``python -m fedsim_tf.data.phantoms``) are absl apps whose flags are defined at the top of the
modules that use them and whose ``main(argv)`` is started by :func:`run`:

* flagfiles (``--flagfile=FILE``) are expanded before absl parses the command line; a
  ``--flagfile`` line inside a flagfile names a path relative to the file that contains it, so a
  preset that builds on another works from any working directory;
* a bad command line (unknown or malformed flag, a value out of range, a missing flagfile) and
  every :class:`~fedsim_tf.errors.UserInputError` raised by ``main`` end with ``error: <message>``
  on stderr -- one line per problem -- and exit code 2; nothing else reaches stderr;
* nothing here imports TensorFlow, and the entry points' modules import it only once the command
  line has been checked, so a bad command line is rejected in a fraction of a second and without
  TensorFlow's start-up lines (which some CPUs print whatever ``TF_CPP_MIN_LOG_LEVEL`` says).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from absl import app, flags, logging

from fedsim_tf.errors import UserInputError

FLAGFILE_PREFIXES: tuple[str, ...] = ("--flagfile=", "-flagfile=")
EXIT_USAGE = 2


def fail(message: str) -> NoReturn:
    """Print ``error: <line>`` for every line of ``message`` on stderr and exit with code 2."""
    lines = [line for line in str(message).splitlines() if line.strip()] or ["unknown error"]
    for line in lines:
        print(f"error: {' '.join(line.split())}", file=sys.stderr)
    sys.stderr.flush()
    sys.exit(EXIT_USAGE)


def _flagfile_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise UserInputError(f"--flagfile={path}: cannot read it ({type(error).__name__}: "
                             f"{getattr(error, 'strerror', None) or error})") from error
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith(("#", "//"))]


def expand_flagfiles(argv: Sequence[str], base_dir: str | None = None, _active: tuple[str, ...] = ()) -> list[str]:
    """``argv`` with every ``--flagfile=FILE`` replaced by the flags in ``FILE``, recursively.

    Args:
        argv: command-line arguments (without the program name).
        base_dir: folder that relative ``FILE`` paths are resolved against: the current working
            directory for the command line, the containing file's folder inside a flagfile.

    Raises:
        UserInputError: an unreadable flagfile, or one that includes itself.
    """
    expanded: list[str] = []
    for arg in argv:
        prefix = next((p for p in FLAGFILE_PREFIXES if arg.startswith(p)), None)
        if prefix is None:
            expanded.append(arg)
            continue
        name = arg[len(prefix):]
        path = os.path.abspath(os.path.join(base_dir or os.getcwd(), os.path.expanduser(name)))
        if path in _active:
            raise UserInputError(f"--flagfile={name}: includes itself ({' -> '.join(_active + (path,))})")
        lines = _flagfile_lines(path)
        expanded += expand_flagfiles(lines, os.path.dirname(path), _active + (path,))
    return expanded


def parse_flags(argv: Sequence[str]) -> list[str]:
    """absl's flag parsing with flagfiles expanded; every error ends the program with one line and exit 2.

    Args:
        argv: ``sys.argv``-style arguments (program name first).

    Returns:
        The program name and the positional arguments.
    """
    try:
        return flags.FLAGS([argv[0], *expand_flagfiles(argv[1:])])
    except (flags.Error, UserInputError) as error:
        fail(str(error))


def run(main: Callable[[list[str]], object], argv: Sequence[str] | None = None) -> None:
    """Start an absl app: parse the flags (:func:`parse_flags`), run ``main``, turn user errors into
    ``error:`` lines and exit code 2 (:func:`fail`).

    Args:
        main: the entry point; called with ``[program name]`` (positional arguments are refused: every
            input is a flag). A non-``None`` integer return value becomes the exit code.
        argv: the command line (default ``sys.argv``).
    """

    def guarded(args: list[str]) -> object:
        if len(args) > 1:
            fail(f"unexpected arguments: {' '.join(args[1:])} (every input is a --flag)")
        try:
            return main(args)
        except UserInputError as error:
            logging.flush()
            fail(str(error))

    app.run(guarded, argv=list(sys.argv if argv is None else argv), flags_parser=parse_flags)
