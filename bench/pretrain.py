"""Pre-training speed and memory at the demo and paper sizes: steps/s and peak RSS, printed as a table.

Each preset runs in subprocesses (``python -m fedsim_tf.main --stage=pretrain``) on the preset's
own inputs (phantom hospitals) in a temporary work_dir, so the numbers include the real shape op,
CT simulator and optimisers: one run of 1 step (start-up, data loading and caching, model build),
then a run resuming it for ``--steps`` more, whose own progress line gives the training loop's
steps/s (start-up excluded, the resumed process's first-step tracing included). Peak RSS is the
largest child process so far (presets run from small to large).

    python -m bench.pretrain [--steps=6] [--presets=demo,paper]

The paper preset must stay within 8 GB peak RSS on a 2-core machine.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile

from absl import app, flags

flags.DEFINE_integer("steps", 6, "Steps timed per preset (after one warm-up run of 1 step).", lower_bound=2)
flags.DEFINE_list("presets", ["demo", "paper"], "Flag files under flags/ to measure.")

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RSS_LIMIT_GB = {"paper": 8.0}


PROGRESS_RATE = re.compile(r"pretrain step \d+/\d+ \| ([0-9.]+) steps/s")


def _run(preset: str, work_dir: str, steps: int) -> tuple[float, float]:
    """Run the stage up to ``steps`` steps (resuming what ``work_dir`` holds).

    Returns:
        (steps/s of the training loop as the stage's own progress line reports it, i.e. without
        start-up and data loading; peak RSS of the children so far in GB).
    """
    command = [
        sys.executable, "-m", "fedsim_tf.main", f"--flagfile={os.path.join(ROOT, 'flags', preset + '.cfg')}",
        "--stage=pretrain", f"--work_dir={work_dir}", f"--pretrain_steps={steps}", "--perceptual=none",
        f"--checkpoint_every={steps}", f"--log_every={steps}",
    ]
    result = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"})
    rates = PROGRESS_RATE.findall(result.stderr)
    if not rates:
        raise RuntimeError(f"no progress line in the {preset} run's log:\n{result.stderr[-2000:]}")
    return float(rates[-1]), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2


def main(argv: list[str]) -> None:
    del argv
    rows = []
    for preset in FLAGS.presets:
        with tempfile.TemporaryDirectory() as work_dir:
            _run(preset, work_dir, 1)  # data loading/caching, model build, 1 step
            rate, peak = _run(preset, work_dir, 1 + FLAGS.steps)  # resumes at step 1

        rows.append((preset, rate, peak))
    print(f"{'preset':<8} {'steps/s':>9} {'s/step':>8} {'peak RSS GB':>12}  (2-core CPU, --perceptual=none)")
    for preset, rate, peak in rows:
        limit = RSS_LIMIT_GB.get(preset)
        note = "" if limit is None else ("  OK (< %.0f GB)" % limit if peak < limit else "  OVER %.0f GB" % limit)
        print(f"{preset:<8} {rate:>9.3f} {1 / rate:>8.2f} {peak:>12.2f}{note}")


if __name__ == "__main__":
    app.run(main)
