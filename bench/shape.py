"""Voxelisation and finite-difference shape-op timings (single thread).

Prints, for the default SSM's mean heart (7 structures): the time of one exact voxelisation at
64^3 and 128^3, and the time of one forward + FD backward pass of the shape op per sample
(1 + 2 P voxelisations, P = n_modes + 7). Run: ``python bench/shape.py [--sizes 64 128]``.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from fedsim_tf.grid import Grid  # noqa: E402
from fedsim_tf.shape.shape_op import ShapeRenderer, render_shapes  # noqa: E402
from fedsim_tf.shape.ssm import default_ssm  # noqa: E402
from fedsim_tf.shape.voxelize import voxelize  # noqa: E402

FOV_MM = 160.0


def best_of(fn, repeats: int) -> float:
    """Smallest wall time in seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    ssm = default_ssm()
    heart = ssm.mean
    centre = heart.centre()
    print(f"heart: {len(heart.structures)} structures, vertices {heart.vertex_counts}, "
          f"faces {sum(len(s.faces) for s in heart.structures)}; FOV {FOV_MM:.0f} mm")
    print(f"{'grid':>6} | {'voxelize [s]':>12} | {'fwd+FD grad / sample [s]':>24} | voxelisations")
    for n in args.sizes:
        grid = Grid.centred(n, FOV_MM, centre_mm=tuple(centre))
        t_vox = best_of(lambda: voxelize(heart, grid), args.repeats)
        renderer = ShapeRenderer(ssm, grid)
        rng = np.random.default_rng(0)
        params = tf.constant(0.5 * rng.normal(size=(1, renderer.num_params)), tf.float32)

        def fwd_bwd() -> None:
            with tf.GradientTape() as tape:
                tape.watch(params)
                _, mask = render_shapes(params, renderer)
                loss = tf.reduce_sum(mask * mask)
            tape.gradient(loss, params).numpy()

        t_grad = best_of(fwd_bwd, max(1, args.repeats // 2))
        print(f"{n:>4}^3 | {t_vox:12.4f} | {t_grad:24.3f} | {1 + 2 * renderer.num_params}")


if __name__ == "__main__":
    main()
