"""Throughput and memory of the pyronn_ops cone-beam operators on this machine.

Prints, per volume size and execution mode: ``xla`` = a plain eager call with the default
backend (cached XLA-compiled kernels), ``tf`` = eager call with ``backend="tf"`` (plain,
unfused TensorFlow ops), ``jit`` = the caller wraps the default call in
``tf.function(jit_compile=True)``:
forward projection speed in M samples/s (samples actually taken along rays, step 4 of the kernel),
back-projection speed in GUPS (voxel updates = voxels x views, per second) and the peak RSS of
the process running that case (each case runs in a fresh subprocess). Then the memory check:
a 128^3 volume projected to 360 views of 256^2 must stay within 4 GB peak RSS.

Usage:
    python bench/projector.py                       # 64^3 and 128^3, 128^2 detector, 180 views, xla vs tf
    python bench/projector.py --sizes 32 --views 20 --no-memory-check   # quick smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _geometry(size: int, detector: int, views: int):
    import numpy as np

    from pyronn_ops import GeometryCone3D, circular_trajectory_3d

    spacing = 128.0 / size  # a 128 mm field of view at every size
    detector_spacing = 256.0 / detector  # a 256 mm detector: the magnified volume fits
    geometry = GeometryCone3D(
        (size,) * 3, (spacing,) * 3, (detector, detector), (detector_spacing,) * 2, views, 2 * np.pi, 1200.0, 750.0
    )
    geometry.set_trajectory(circular_trajectory_3d(geometry))
    return geometry


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_case(size: int, detector: int, views: int, mode: str, repeats: int, operators: str) -> dict:
    """Time one case in this process and return its figures."""
    import numpy as np
    import tensorflow as tf

    from pyronn_ops import cone_backprojection3d, cone_projection3d
    from pyronn_ops.operator_setup import DEFAULT_CHUNK_ELEMENTS, resolve_setup
    from pyronn_ops.projection import sample_counts

    geometry = _geometry(size, detector, views)
    rng = np.random.default_rng(0)
    volume = tf.constant(rng.random((1, size, size, size), dtype=np.float32))
    sinogram = tf.constant(rng.random((1, *geometry.sinogram_shape), dtype=np.float32))
    backend = "tf" if mode == "tf" else "xla"
    forward = lambda x: cone_projection3d(x, geometry, backend=backend)  # noqa: E731
    backward = lambda y: cone_backprojection3d(y, geometry, backend=backend)  # noqa: E731
    if mode == "jit":
        forward, backward = tf.function(forward, jit_compile=True), tf.function(backward, jit_compile=True)

    def seconds(function, argument) -> tuple[float, float]:
        start = time.perf_counter()
        function(argument).numpy()  # first call: tracing/compilation included
        first = time.perf_counter() - start
        if repeats == 0:
            return first, first
        start = time.perf_counter()
        for _ in range(repeats):
            function(argument).numpy()
        return first, (time.perf_counter() - start) / repeats

    result = {"size": size, "detector": detector, "views": views, "mode": mode}
    if operators in ("both", "forward"):
        setup = resolve_setup(geometry, None, True, True, None, DEFAULT_CHUNK_ELEMENTS)
        count = tf.function(lambda: tf.reduce_sum(tf.cast(sample_counts(setup, 1), tf.int64)), jit_compile=True)
        samples = int(count())
        first, steady = seconds(forward, volume)
        result.update(fp_first_s=first, fp_s=steady, fp_msamples=samples / steady / 1e6)
    if operators in ("both", "backward"):
        first, steady = seconds(backward, sinogram)
        result.update(bp_first_s=first, bp_s=steady, bp_gups=size**3 * views / steady / 1e9)
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def _subprocess(arguments: list[str]) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--single", *arguments]
    environment = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"case {arguments} failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="volume edge lengths (voxels)")
    parser.add_argument("--detector", type=int, default=128, help="detector edge length (pixels)")
    parser.add_argument("--views", type=int, default=180, help="number of projections")
    parser.add_argument("--modes", nargs="+", default=["xla", "tf"], choices=["xla", "tf", "jit"])
    parser.add_argument("--repeats", type=int, default=1, help="timed calls after the first one")
    parser.add_argument("--no-memory-check", action="store_true", help="skip the 128^3 -> 360 x 256^2 RSS check")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--operators", default="both", choices=["both", "forward", "backward"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.single:
        figures = run_case(args.sizes[0], args.detector, args.views, args.modes[0], args.repeats, args.operators)
        print(json.dumps(figures))
        return

    print(f"pyronn_ops projector bench: {os.cpu_count()} CPUs, detector {args.detector}^2, {args.views} views")
    header = f"{'volume':>7} {'mode':>6} {'FP 1st s':>9} {'FP s':>7} {'FP Msamp/s':>11} {'BP 1st s':>9} {'BP s':>7} {'BP GUPS':>8} {'peak RSS MB':>12}"
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        for mode in args.modes:
            common = ["--detector", str(args.detector), "--views", str(args.views), "--repeats", str(args.repeats)]
            r = _subprocess(["--sizes", str(size), "--modes", mode, *common])
            print(
                f"{size:>5}^3 {mode:>6} {r['fp_first_s']:>9.2f} {r['fp_s']:>7.2f} {r['fp_msamples']:>11.1f} "
                f"{r['bp_first_s']:>9.2f} {r['bp_s']:>7.2f} {r['bp_gups']:>8.3f} {r['peak_rss_mb']:>12.0f}"
            )
    print("targets: forward >= 40 M samples/s, back-projection >= 0.05 GUPS")

    if not args.no_memory_check:
        r = _subprocess(["--sizes", "128", "--detector", "256", "--views", "360", "--modes", "jit", "--repeats", "0", "--operators", "forward"])
        verdict = "OK" if r["peak_rss_mb"] <= 4096 else "OVER"
        print(
            f"memory check: 128^3 -> 360 x 256^2 forward (jit_compile) peak RSS {r['peak_rss_mb']:.0f} MB "
            f"(limit 4096 MB: {verdict}), {r['fp_first_s']:.1f} s, {r['fp_msamples']:.1f} M samples/s"
        )


if __name__ == "__main__":
    main()
