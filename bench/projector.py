"""Throughput and memory of the pyronn_ops cone-beam operators on this machine.

Prints, per volume size and execution mode: ``native`` = eager call with ``backend="native"``
(the C++ custom ops, ``make native``), ``xla`` = eager call with ``backend="xla"`` (cached
XLA-compiled kernels), ``tf`` = eager call with ``backend="tf"`` (plain, unfused TensorFlow ops),
``jit`` = the caller wraps the default call in ``tf.function(jit_compile=True)`` (which runs the
XLA kernels): forward projection speed in M samples/s (samples actually taken along rays, step 4
of the kernel), back-projection speed in GUPS (voxel updates = voxels x views, per second) and
the peak RSS of the process running that case (each case runs in a fresh subprocess). Then the
speed ratios of the modes against ``xla`` measured in this run, and the memory check: a 128^3
volume projected to 360 views of 256^2 must stay within 4 GB peak RSS.

``--peer``: the forward projection of a 64^3 volume (2 mm voxels) to 16 views of 128^2 (2 mm
pixels) by pyronn_ops' default backend against diffct 2.5's cone projector on torch CPU, in views
per second, with the relative difference of their per-view integrals (both projectors compute
line integrals of the same phantom in the same scanner). diffct and torch are not project
requirements: ``.venv/bin/python -m pip install torch==2.13.0 diffct==2.5.0`` for this comparison.

Usage:
    python -m bench.projector                       # 64^3 and 128^3, 128^2 detector, 180 views, native vs xla
    python -m bench.projector --sizes 32 --views 20 --no-memory-check   # quick smoke run
    python -m bench.projector --peer                # pyronn_ops vs diffct (torch CPU)
    python -m bench.projector --sizes 128 --modes native --threads 1   # one core's throughput
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
MODES = ("native", "xla", "tf", "jit")
PEER_SIZE, PEER_DETECTOR, PEER_VIEWS = 64, 128, 16


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


def _seconds(function, argument, repeats: int) -> tuple[float, float]:
    """(first call incl. tracing/compilation, mean of ``repeats`` further calls) in seconds."""
    start = time.perf_counter()
    function(argument).numpy()
    first = time.perf_counter() - start
    if repeats == 0:
        return first, first
    start = time.perf_counter()
    for _ in range(repeats):
        function(argument).numpy()
    return first, (time.perf_counter() - start) / repeats


def run_case(size: int, detector: int, views: int, mode: str, repeats: int, operators: str) -> dict:
    """Time one case in this process and return its figures."""
    import numpy as np
    import tensorflow as tf

    from pyronn_ops import cone_backprojection3d, cone_projection3d, native
    from pyronn_ops.operator_setup import DEFAULT_CHUNK_ELEMENTS, resolve_setup
    from pyronn_ops.projection import sample_counts

    if mode == "native" and native.load().library is None:
        return {"unavailable": native.load().reason}
    geometry = _geometry(size, detector, views)
    rng = np.random.default_rng(0)
    volume = tf.constant(rng.random((1, size, size, size), dtype=np.float32))
    sinogram = tf.constant(rng.random((1, *geometry.sinogram_shape), dtype=np.float32))
    backend = "auto" if mode == "jit" else mode
    forward = lambda x: cone_projection3d(x, geometry, backend=backend)  # noqa: E731
    backward = lambda y: cone_backprojection3d(y, geometry, backend=backend)  # noqa: E731
    if mode == "jit":
        forward, backward = tf.function(forward, jit_compile=True), tf.function(backward, jit_compile=True)

    result = {"size": size, "detector": detector, "views": views, "mode": mode}
    if operators in ("both", "forward"):
        setup = resolve_setup(geometry, None, True, True, None, DEFAULT_CHUNK_ELEMENTS)
        count = tf.function(lambda: tf.reduce_sum(tf.cast(sample_counts(setup, 1), tf.int64)), jit_compile=True)
        samples = int(count())
        first, steady = _seconds(forward, volume, repeats)
        result.update(fp_first_s=first, fp_s=steady, fp_msamples=samples / steady / 1e6)
    if operators in ("both", "backward"):
        first, steady = _seconds(backward, sinogram, repeats)
        result.update(bp_first_s=first, bp_s=steady, bp_gups=size**3 * views / steady / 1e9)
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def run_peer(repeats: int) -> dict:
    """pyronn_ops (default backend) and diffct (torch CPU) on the same 64^3 -> 16 x 128^2 projection."""
    import numpy as np
    import tensorflow as tf

    from pyronn_ops import cone_projection3d, shepp_logan_3d
    from pyronn_ops.backends import resolve_backend

    geometry = _geometry(PEER_SIZE, PEER_DETECTOR, PEER_VIEWS)
    phantom = np.asarray(shepp_logan_3d([PEER_SIZE] * 3), np.float32)
    volume = tf.constant(phantom[None])
    project = lambda x: cone_projection3d(x, geometry)  # noqa: E731
    first, steady = _seconds(project, volume, repeats)
    ours = project(volume).numpy()[0]
    result = {"backend": resolve_backend("auto"), "ours_first_s": first, "ours_views_s": PEER_VIEWS / steady}
    try:
        import diffct
        import torch
    except ImportError as error:
        result["diffct"] = f"not installed ({error.name}): .venv/bin/python -m pip install torch==2.13.0 diffct==2.5.0"
        return result
    torch.set_num_threads(os.cpu_count() or 1)
    spacing = float(geometry.volume_spacing[0])
    trajectory = diffct.circular_trajectory_3d(
        PEER_VIEWS, sid=geometry.source_isocenter_distance, sdd=geometry.source_detector_distance,
        end_angle=2 * math.pi, device="cpu",
    )
    projector = diffct.Projector(
        trajectory, (PEER_SIZE,) * 3, (PEER_DETECTOR, PEER_DETECTOR), beam="cone",
        detector_spacing=tuple(float(s) for s in geometry.detector_spacing), voxel_spacing=spacing,
    )
    theirs_volume = torch.from_numpy(phantom)
    start = time.perf_counter()
    theirs = projector(theirs_volume).numpy()
    theirs_first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(max(1, repeats)):
        projector(theirs_volume)
    theirs_steady = (time.perf_counter() - start) / max(1, repeats)
    # per-view integrals over the detector do not depend on the detector axes' conventions
    ours_mass, theirs_mass = ours.sum(axis=(1, 2)), theirs.sum(axis=(1, 2))
    result.update(
        diffct=f"diffct {diffct.__version__} ({projector.backend} backend, torch {torch.__version__}, {torch.get_num_threads()} threads)",
        theirs_first_s=theirs_first,
        theirs_views_s=PEER_VIEWS / theirs_steady,
        mass_difference=float(np.max(np.abs(ours_mass - theirs_mass) / np.abs(theirs_mass))),
    )
    return result


def _subprocess(arguments: list[str]) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--single", *arguments]
    environment = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"case {arguments} failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _print_peer(repeats: int, threads: list[str]) -> None:
    r = _subprocess(["--peer", "--repeats", str(repeats), *threads])
    print(f"peer: {PEER_SIZE}^3 (2 mm) -> {PEER_VIEWS} views of {PEER_DETECTOR}^2 (2 mm), {os.cpu_count()} CPUs")
    print(f"  pyronn_ops ({r['backend']} backend): {r['ours_views_s']:.1f} views/s (first call {r['ours_first_s']:.2f} s)")
    if "theirs_views_s" not in r:
        print(f"  diffct: {r['diffct']}")
        return
    print(f"  {r['diffct']}: {r['theirs_views_s']:.2f} views/s (first call {r['theirs_first_s']:.2f} s)")
    print(
        f"  ratio: {r['ours_views_s'] / r['theirs_views_s']:.0f}x its views per second (target >= 30x); "
        f"per-view integrals differ by at most {100 * r['mass_difference']:.2f} %"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="volume edge lengths (voxels)")
    parser.add_argument("--detector", type=int, default=128, help="detector edge length (pixels)")
    parser.add_argument("--views", type=int, default=180, help="number of projections")
    parser.add_argument("--modes", nargs="+", default=["native", "xla"], choices=MODES)
    parser.add_argument("--repeats", type=int, default=1, help="timed calls after the first one")
    parser.add_argument("--no-memory-check", action="store_true", help="skip the 128^3 -> 360 x 256^2 RSS check")
    parser.add_argument("--peer", action="store_true", help="only the comparison with diffct on torch CPU")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads per case (0: its default)")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--operators", default="both", choices=["both", "forward", "backward"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.single:
        if args.threads:
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        if args.peer:
            figures = run_peer(args.repeats)
        else:
            figures = run_case(args.sizes[0], args.detector, args.views, args.modes[0], args.repeats, args.operators)
        print(json.dumps(figures))
        return
    threads = ["--threads", str(args.threads)] if args.threads else []
    if args.peer:
        _print_peer(args.repeats, threads)
        return

    print(f"pyronn_ops projector bench: {os.cpu_count()} CPUs, {args.threads or 'default'} threads, "
          f"detector {args.detector}^2, {args.views} views")
    header = f"{'volume':>7} {'mode':>6} {'FP 1st s':>9} {'FP s':>7} {'FP Msamp/s':>11} {'BP 1st s':>9} {'BP s':>7} {'BP GUPS':>8} {'peak RSS MB':>12}"
    print(header)
    print("-" * len(header))
    ratios = []
    for size in args.sizes:
        rows = {}
        for mode in args.modes:
            common = ["--detector", str(args.detector), "--views", str(args.views), "--repeats", str(args.repeats), *threads]
            r = _subprocess(["--sizes", str(size), "--modes", mode, *common])
            if "unavailable" in r:
                print(f"{size:>5}^3 {mode:>6}  unavailable: {r['unavailable']}")
                continue
            rows[mode] = r
            print(
                f"{size:>5}^3 {mode:>6} {r['fp_first_s']:>9.2f} {r['fp_s']:>7.2f} {r['fp_msamples']:>11.1f} "
                f"{r['bp_first_s']:>9.2f} {r['bp_s']:>7.3f} {r['bp_gups']:>8.3f} {r['peak_rss_mb']:>12.0f}"
            )
        if "xla" in rows:
            for mode, r in rows.items():
                if mode != "xla":
                    ratios.append(
                        f"{size}^3 {mode} / xla: forward {r['fp_msamples'] / rows['xla']['fp_msamples']:.1f}x, "
                        f"back-projection {r['bp_gups'] / rows['xla']['bp_gups']:.1f}x"
                    )
    for line in ratios:
        print(line)
    print("targets (2 cores, 128^3, 180 views of 128^2): native forward >= 300 M samples/s, back-projection >= 1 GUPS; "
          "xla forward >= 40 M samples/s, back-projection >= 0.05 GUPS")

    if not args.no_memory_check:
        r = _subprocess(["--sizes", "128", "--detector", "256", "--views", "360", "--modes", "jit", "--repeats", "0", "--operators", "forward"])
        verdict = "OK" if r["peak_rss_mb"] <= 4096 else "OVER"
        print(
            f"memory check: 128^3 -> 360 x 256^2 forward (jit_compile) peak RSS {r['peak_rss_mb']:.0f} MB "
            f"(limit 4096 MB: {verdict}), {r['fp_first_s']:.1f} s, {r['fp_msamples']:.1f} M samples/s"
        )


if __name__ == "__main__":
    main()
