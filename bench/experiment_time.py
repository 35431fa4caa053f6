"""Expected wall time of an experiment preset on this machine, from per-step timings measured at the preset's
own sizes and data.

    python -m bench.experiment_time --flagfile=flags/table3_paper.cfg [--timed_steps=4]
                                    [--measured_manifest=runs/table3_demo/results/table3_manifest.json]

Running a preset to learn its time is what this avoids: the paper preset is weeks of CPU. Instead, one short
run of every kind of training the preset's protocol holds (:func:`fedsim_tf.stages.experiment.plan`), each a
fresh ``python -m fedsim_tf.main`` with the preset's flags on the first site, ``--timed_steps`` steps each, in a
temporary work dir:

* ``pretrain``, ``pretrain_gan`` (learned material; Fix-Mat's steps cost the same), ``semi`` and
  ``synthesize --generator=semi`` (3 volumes) of the site's own generator;
* ``segment --mode=lower`` with batch ``--seg_batch_size`` and with batch 3 (the federated rows' batch; not
  tried when the smaller batch failed);
* ``federated`` (every site; ``--timed_steps`` GLO rounds, GAN steps per site and semi-supervised rounds),
  when the plan has federated cells.

A data-preparation run (phantom hospitals, preprocessing; once per preset) comes first and is timed apart.
``--perceptual=vgg19`` without the ImageNet weights in the Keras cache is timed with a random-weight VGG-19.
Seconds per step come from each run's own progress lines (timestamps of its lines after the first step, so
the first step's tracing is left out; a segmentation run's last line, which follows a validation, too when
there are three lines or more). A run's fixed cost is its wall time less the interpreter's start-up (timed
once) and its steps' share: model building, tracing, checkpoints, validation and test. Every cell of the plan
is then its kind's fixed cost plus its step count (the preset's flags) times the seconds per step:

* single-site segment rows: ``--seg_steps`` (+ ``--seg_pretrain_steps`` for the synthetic rows) at batch
  ``--seg_batch_size``; Ours-Sim-FL: per site, ``--seg_pretrain_steps + --seg_steps`` at batch 3;
  Direct-FL: ``--seg_pretrain_steps`` rounds, each counted as one batch-3 step (three sites' batch-1
  gradients), then per site ``--seg_steps`` at batch 3;
* ``federated``: GLO rounds, every site's GAN steps and semi-supervised rounds at their own rates.

Not timed: the novelty and out-of-distribution cells (a few seconds each at demo sizes) and a validation per
``--val_every`` steps beyond the one each short segmentation run holds. ``--measured_manifest`` (a finished
run's ``table3_manifest.json`` or ``table2_manifest.json`` of the same preset) prints the measured cell wall
times per kind beside the estimate. A run that fails (e.g. killed for memory) is reported with its last log
lines and its kind left out of the total.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from absl import flags

from fedsim_tf import cli
from fedsim_tf import main as fedsim_main  # noqa: F401  (defines every stage's flags)
from fedsim_tf.experiments.cells import FEDERATED_ROWS, SYNTHETIC_ROWS, Cell
from fedsim_tf.stages import experiment, inputs
from fedsim_tf.stages.segment import FEDERATED_BATCH_SIZE

flags.DEFINE_integer("timed_steps", 4, "Steps (GLO/semi rounds, GAN steps) of every short run.", lower_bound=2)
flags.DEFINE_string("measured_manifest", "", "A finished run's manifest of the same preset: measured wall times "
                    "per kind beside the estimate.")

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OWN_FLAGS = ("--timed_steps", "--measured_manifest")
PROGRESS = re.compile(r"^I(\d{4}) (\d\d:\d\d:\d\d\.\d+)\s+\d+ progress\.py:\d+\] (.+?) step (\d+)/(\d+) \|", re.M)
SYNTHESIS_VOLUMES = 3
UNTIMED = ("novelty", "ood")
ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}


@dataclass
class Timing:
    """One short run: its wall time, its progress lines by name (``(seconds, step)``), its log tail on failure."""

    wall_s: float
    lines: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    failure: str = ""

    def seconds_per_step(self, name: str, drop_last: bool = False, steps: range | None = None) -> float | None:
        """Seconds per step of the lines of ``name`` (within ``steps`` when given), the first line's step
        (tracing) excluded; ``drop_last`` leaves the last line out when three or more remain."""
        points = [(t, k) for t, k in self.lines.get(name, []) if steps is None or k in steps]
        if drop_last and len(points) >= 3:
            points = points[:-1]
        if len(points) < 2 or points[-1][1] == points[0][1]:
            return None
        return (points[-1][0] - points[0][0]) / (points[-1][1] - points[0][1])


def _parse(log: str) -> dict[str, list[tuple[float, int]]]:
    lines: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for day, clock, name, step, _ in PROGRESS.findall(log):
        stamp = datetime.strptime(f"2000{day} {clock}", "%Y%m%d %H:%M:%S.%f").timestamp()
        lines[name].append((stamp, int(step)))
    return dict(lines)


def _run(arguments: Sequence[str], work_dir: str, *extra: str) -> Timing:
    command = [sys.executable, "-m", "fedsim_tf.main", *arguments, f"--work_dir={work_dir}", *extra]
    print("  $", " ".join(command[1:]), flush=True)
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=ENV)
    timing = Timing(time.monotonic() - started, _parse(result.stderr))
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-3:])[-600:]
        timing.failure = f"exit {result.returncode}: {tail}"
        print(f"    failed ({timing.failure})", flush=True)
    else:
        print(f"    {timing.wall_s:.1f} s", flush=True)
    return timing


@dataclass(frozen=True)
class Rate:
    """A kind of work: fixed seconds per cell and seconds per step (None where its run failed); ``parts``: the
    seconds per step of each part of a federated run (GLO rounds, each site's GAN steps, semi rounds)."""

    fixed_s: float | None
    step_s: float | None
    note: str = ""
    parts: tuple[float, ...] = ()


def _rate(timing: Timing, startup_s: float, groups: Sequence[tuple[float | None, int]]) -> Rate:
    """``groups``: (seconds per step, steps) of the run's parts."""
    if timing.failure:
        return Rate(None, None, timing.failure)
    if any(step_s is None for step_s, _ in groups):
        return Rate(None, None, "too few progress lines: raise --timed_steps")
    work = sum(step_s * steps for step_s, steps in groups)
    return Rate(max(0.0, timing.wall_s - startup_s - work), groups[0][0], parts=tuple(s for s, _ in groups))


def _perceptual_stand_in(folder: str) -> list[str]:
    """``--perceptual=vgg19`` without the ImageNet weights in the Keras cache (no download here): a VGG-19 of
    random weights, written to ``folder``, costs the same per step; returns the flag that selects it."""
    from fedsim_tf.losses.generation import VGG_NOTOP_FILE, keras_cache_file

    if FLAGS.perceptual != "vgg19" or os.path.isfile(keras_cache_file(VGG_NOTOP_FILE)):
        return []
    import keras

    path = os.path.join(folder, "vgg19_random.weights.h5")
    keras.applications.VGG19(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(path)
    print(f"  --perceptual=vgg19 without cached ImageNet weights: timing a random-weight VGG-19 ({path})")
    return [f"--perceptual={path}"]


def _measure(arguments: Sequence[str], site: str, sites: Sequence[str], federated: bool,
             seg_batch: int) -> tuple[float, Timing, dict[str, Rate]]:
    """Time the short runs; returns (start-up seconds, the data-preparation run, the rates by kind)."""
    n = FLAGS.timed_steps
    single = ["--single_site", f"--site={site}"]
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import tensorflow, fedsim_tf.main"], cwd=ROOT, check=True, env=ENV)
    startup = time.monotonic() - started
    with tempfile.TemporaryDirectory(prefix="experiment_time_") as tmp:
        arguments = [*arguments, *_perceptual_stand_in(tmp)]
        prepare = _run(arguments, os.path.join(tmp, "prepare"), "--stage=pretrain", *single, "--pretrain_steps=1")
        work = os.path.join(tmp, "work")
        runs = {"pretrain": _run(arguments, work, "--stage=pretrain", *single, f"--pretrain_steps={n}"),
                "pretrain_gan": _run(arguments, work, "--stage=pretrain_gan", *single, f"--gan_steps={n}",
                                     "--material=learned"),
                "semi": _run(arguments, work, "--stage=semi", *single, f"--semi_steps={n}"),
                "synthesize": _run(arguments, work, "--stage=synthesize", *single, "--generator=semi",
                                   f"--num_samples={SYNTHESIS_VOLUMES}")}
        segment = ["--stage=segment", "--mode=lower", f"--site={site}", "--folds=1", f"--seg_steps={n}"]
        runs["segment"] = _run(arguments, os.path.join(tmp, "segment"), *segment, f"--seg_batch_size={seg_batch}")
        if seg_batch == FEDERATED_BATCH_SIZE or (runs["segment"].failure and seg_batch < FEDERATED_BATCH_SIZE):
            runs["segment3"] = runs["segment"]  # the same run, or one that failed with a smaller batch
        else:
            runs["segment3"] = _run(arguments, os.path.join(tmp, "segment3"), *segment,
                                    f"--seg_batch_size={FEDERATED_BATCH_SIZE}")
        if federated:
            runs["federated"] = _run(arguments, work, "--stage=federated", f"--fed_pretrain_rounds={n}",
                                     f"--fed_gan_steps={n}", f"--fed_semi_rounds={n}")
    rates: dict[str, Rate] = {}
    for kind in ("pretrain", "pretrain_gan", "semi"):
        name = kind if kind != "pretrain_gan" else f"pretrain_gan {site}"
        rates[kind] = _rate(runs[kind], startup, [(runs[kind].seconds_per_step(name), n)])
    rates["synthesize"] = _rate(runs["synthesize"], startup,
                                [(runs["synthesize"].seconds_per_step("synthesize"), SYNTHESIS_VOLUMES)])
    for kind in ("segment", "segment3"):
        timing = runs[kind]
        name = next((key for key in timing.lines if key.startswith("segment lower ")), "")
        rates[kind] = _rate(timing, startup, [(timing.seconds_per_step(name, drop_last=True), n)])
    if federated:
        timing = runs["federated"]
        parts = [(timing.seconds_per_step("federated", steps=range(1, n + 1)), n)]
        parts += [(timing.seconds_per_step(f"pretrain_gan {s}"), n) for s in sites]
        parts.append((timing.seconds_per_step("federated", steps=range(n + 1, 2 * n + 1)), n))
        rates["federated"] = _rate(timing, startup, parts)
    return startup, prepare, rates


RATE_OF_KIND: dict[str, str] = {"segment single-site": "segment", "segment Ours-Sim-FL": "segment3",
                                "segment Direct-FL": "segment3"}
"""The short run whose rate a kind of cell uses (the kind itself when absent)."""


def _kind(cell: Cell) -> str:
    if cell.stage == "segment":
        return f"segment {cell.method}" if cell.method in FEDERATED_ROWS else "segment single-site"
    return cell.stage


def _cell_work(cell: Cell, counts: dict[str, int], sites: int) -> tuple[list[int], int]:
    """(steps of each part, trainings that pay the fixed cost) of one planned cell: one part, except the
    federated cell (GLO rounds, each site's GAN steps, semi-supervised rounds); no work for the studies."""
    stage = cell.stage
    if stage in ("pretrain", "pretrain_gan", "semi"):
        return [counts[stage]], 1
    if stage == "synthesize":
        return [counts["num_samples"]], 1
    if stage in UNTIMED:
        return [0], 0
    if stage == "federated":
        return [counts["fed_pretrain_rounds"], *[counts["fed_gan_steps"]] * sites, counts["fed_semi_rounds"]], 1
    tuning, pre = counts["seg_steps"], counts["seg_pretrain_steps"]
    if cell.method == "Ours-Sim-FL":
        return [sites * (pre + tuning)], sites
    if cell.method == "Direct-FL":
        return [pre + sites * tuning], sites  # a round: three sites' batch-1 gradients, counted as a batch-3 step
    return [tuning + (pre if cell.method in SYNTHETIC_ROWS else 0)], 1


def _cell_seconds(rate: Rate, work: tuple[list[int], int]) -> float | None:
    """Expected seconds of a cell doing ``work`` (:func:`_cell_work`) at ``rate``; None: not measured."""
    steps, trainings = work
    if trainings == 0:
        return 0.0
    if rate.fixed_s is None:
        return None
    per_step = rate.parts if len(steps) > 1 else (rate.step_s,)
    return trainings * rate.fixed_s + sum(s * count for s, count in zip(per_step, steps))


def _hours(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 48 * 3600 else f"{seconds / 86400:.1f} days"


def main(argv: list[str]) -> None:
    del argv
    arguments = [a for a in sys.argv[1:] if not a.startswith(OWN_FLAGS)]
    config = experiment.config_from_flags()
    cells = experiment.plan(config)
    sites = inputs.site_names(config.stages.common)
    counts = {"pretrain": FLAGS.pretrain_steps, "pretrain_gan": FLAGS.gan_steps, "semi": FLAGS.semi_steps,
              "num_samples": FLAGS.num_samples, "seg_steps": FLAGS.seg_steps,
              "seg_pretrain_steps": FLAGS.seg_pretrain_steps, "fed_pretrain_rounds": FLAGS.fed_pretrain_rounds,
              "fed_gan_steps": FLAGS.fed_gan_steps, "fed_semi_rounds": FLAGS.fed_semi_rounds}
    print(f"plan: {len(cells)} cells over sites {', '.join(sites)}; timing short runs on {sites[0]} "
          f"({FLAGS.timed_steps} steps each):", flush=True)
    startup, prepare, rates = _measure(arguments, sites[0], sites, any(c.stage == "federated" for c in cells),
                                       FLAGS.seg_batch_size)
    recorded: dict[str, float] = {}
    if FLAGS.measured_manifest:
        with open(FLAGS.measured_manifest, encoding="utf-8") as file:
            recorded = json.load(file)["cell_wall_s"]
    kinds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for cell in cells:
        kind = _kind(cell)
        work = _cell_work(cell, counts, len(sites))
        rate = rates.get(RATE_OF_KIND.get(kind, kind), Rate(None, None))
        seconds = _cell_seconds(rate, work)
        row = kinds[kind]
        row["cells"] += 1
        row["steps"] += sum(work[0])
        row["expected"] += float("nan") if seconds is None else seconds
        row["measured"] += recorded.get(cell.key, 0.0)
    print(f"\ninterpreter + TensorFlow start-up {startup:.1f} s (left out of every fixed cost); data preparation "
          f"{prepare.wall_s:.0f} s (once){' FAILED: ' + prepare.failure if prepare.failure else ''}")
    print(f"peak RSS of the short runs: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2:.1f} GB")
    header = "| kind | cells | steps | s/step | fixed s | expected |" + (" measured |" if recorded else "")
    print("\n" + header + "\n|" + "---|" * (header.count("|") - 1))
    total, missing = prepare.wall_s, []
    for kind, row in kinds.items():
        rate = rates.get(RATE_OF_KIND.get(kind, kind), Rate(None, None))
        if row["expected"] != row["expected"]:
            missing.append(f"{kind} ({rate.note})")
        else:
            total += row["expected"]
        step = "-" if rate.step_s is None else f"{rate.step_s:.3g}"
        fixed = "-" if rate.fixed_s is None else f"{rate.fixed_s:.0f}"
        expected = ("not measured" if row["expected"] != row["expected"] else
                    "not timed" if kind in UNTIMED else _hours(row["expected"]))
        print(f"| {kind} | {row['cells']:.0f} | {row['steps']:.0f} | {step} | {fixed} | {expected} |"
              + (f" {_hours(row['measured'])} |" if recorded else ""))
    print(f"\nexpected wall time of the preset's {len(cells)} cells on this machine, data preparation included: "
          f"{_hours(total)}" + (f" (measured: {_hours(sum(recorded.values()))} of cell wall time)" if recorded else ""))
    if missing:
        print("left out of that total (their short run failed): " + "; ".join(missing))

if __name__ == "__main__":
    cli.run(main)  # expands the preset's nested flagfiles as the main entry point does
