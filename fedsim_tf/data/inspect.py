"""Check site folders and print a per-case summary.

Usage::

    python -m fedsim_tf.data.inspect --data_dir DIR [--data_dir DIR2 ...] [--layout mmwhs|imagechd]
        [--label_table table.json] [--on_unknown error|background]

The flags are the shared ones of ``python -m fedsim_tf.main`` (:mod:`fedsim_tf.options`), so a folder
that passes here loads there with the same flags. Sizes and spacings are printed in the canonical RAS+
frame the loaders reorient every volume to (x towards the patient's Right, y Anterior, z Superior),
with the orientation codes of the stored voxel axes. Exit code 0 when every folder is usable; 2 with
one ``error:`` line per problem (on stderr) otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from fedsim_tf import cli
from fedsim_tf import options  # noqa: F401  (importing it defines the shared flags read here)
from fedsim_tf.data.errors import DataError
from fedsim_tf.data.labels import load_label_table
from fedsim_tf.data.validate import CaseSummary, inspect_site
from fedsim_tf.errors import UserInputError

FLAGS = flags.FLAGS


def format_summary(summary: CaseSummary) -> str:
    """One line describing a case."""
    x, y, z = summary.shape_ras
    sx, sy, sz = summary.spacing_ras
    labels = ("unlabelled" if summary.labels_present is None
              else "labels " + (",".join(map(str, summary.labels_present)) or "none"))
    return (f"{summary.case_id}: {x}x{y}x{z} voxels (RxAxS), spacing {sx:.3g}x{sy:.3g}x{sz:.3g} mm, "
            f"stored axes {''.join(summary.stored_axes)}, HU {summary.hu_range[0]:.0f}..{summary.hu_range[1]:.0f}, "
            f"{labels}")


def main(argv: Sequence[str]) -> None:
    """Validate every ``--data_dir`` and print the report; problems end as :class:`DataError` (exit 2)."""
    del argv
    if not FLAGS.data_dir:
        raise UserInputError("--data_dir: give the site folder to check (repeat the flag for several)")
    table = load_label_table(FLAGS.label_table) if FLAGS.label_table else None
    problems: list[str] = []
    for folder in FLAGS.data_dir:
        summaries, found = inspect_site(folder, FLAGS.layout, table, FLAGS.on_unknown)
        for summary in summaries:
            print(format_summary(summary))
        problems += found
        if not found:
            print(f"{len(summaries)} case(s) OK in {folder}")
    if problems:
        raise DataError(problems)


if __name__ == "__main__":
    cli.run(main)
