"""Check a site folder and print a per-case summary.

Usage::

    python -m fedsim_tf.data.inspect --data_dir DIR [--layout mmwhs|imagechd]
        [--label_table table.json] [--on_unknown error|background]

Exit code 0 when the folder is usable; 2 with one line per problem (on stderr) otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import app, flags

from fedsim_tf.data.errors import DataError
from fedsim_tf.data.labels import ON_UNKNOWN, load_label_table
from fedsim_tf.data.layouts import LAYOUTS
from fedsim_tf.data.validate import CaseSummary, inspect_site

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Site folder to check.", required=True)
_LAYOUT = flags.DEFINE_enum("layout", "mmwhs", list(LAYOUTS), "File layout of the site folder.")
_LABEL_TABLE = flags.DEFINE_string("label_table", None, "JSON label table overriding the layout's.")
_ON_UNKNOWN = flags.DEFINE_enum("on_unknown", "error", list(ON_UNKNOWN),
                                "Label values missing from the table: error, or map to background.")


def format_summary(summary: CaseSummary) -> str:
    """One line describing a case."""
    z, y, x = summary.shape_zyx
    sz, sy, sx = summary.spacing_zyx
    labels = ("unlabelled" if summary.labels_present is None
              else "labels " + (",".join(map(str, summary.labels_present)) or "none"))
    return (f"{summary.case_id}: {z}x{y}x{x} (ZxYxX) voxels, spacing {sz:.3g}x{sy:.3g}x{sx:.3g} mm, "
            f"HU {summary.hu_range[0]:.0f}..{summary.hu_range[1]:.0f}, {labels}")


def main(argv: Sequence[str]) -> int:
    """Validate ``--data_dir`` and print the report; returns the exit code."""
    del argv
    try:
        table = None if _LABEL_TABLE.value is None else load_label_table(_LABEL_TABLE.value)
    except DataError as err:
        summaries, problems = [], err.problems
    else:
        summaries, problems = inspect_site(_DATA_DIR.value, _LAYOUT.value, table, _ON_UNKNOWN.value)
    for summary in summaries:
        print(format_summary(summary))
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{len(problems)} problem(s) in {_DATA_DIR.value}", file=sys.stderr)
        return 2
    print(f"{len(summaries)} case(s) OK in {_DATA_DIR.value}")
    return 0


if __name__ == "__main__":
    app.run(main)
