"""Run every native kernel once with a fixed number of intra-op threads and save the results.

Used by ``test_native.py`` in a fresh process per thread count (TensorFlow fixes its thread pool
at start-up). Usage: ``python -m tests.pyronn_ops.native_run THREADS OUT.npz``.
"""

from __future__ import annotations

import sys

import numpy as np
import tensorflow as tf

from tests.pyronn_ops.cone_cases import small_geometry


def run_all(out_path: str) -> None:
    """Forward, back-projection and both gradients of both modes on a two-scanner batch, native backend."""
    from pyronn_ops import cone_backprojection3d, cone_projection3d

    first = small_geometry(volume_shape=(26, 22, 24), detector_shape=(18, 20), views=6)
    second = small_geometry(volume_shape=(26, 22, 24), volume_spacing=(0.8, 1.0, 1.1), detector_shape=(18, 20), views=6,
                            angular_range=(1.0, 4.0), convention="pyronn-1.x")
    geometries = [first, second]
    rng = np.random.default_rng(3)
    volume = tf.constant(rng.standard_normal((2, *first.volume_shape)), tf.float32)
    sinogram = tf.constant(rng.standard_normal((2, *first.sinogram_shape)), tf.float32)
    results = {}
    for grad_mode in ("pyronn", "adjoint"):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([volume, sinogram])
            forward = cone_projection3d(volume, geometries, step_size=0.7, grad_mode=grad_mode, backend="native")
            back = cone_backprojection3d(sinogram, geometries, grad_mode=grad_mode, backend="native")
        results[f"forward_{grad_mode}"] = forward.numpy()
        results[f"back_{grad_mode}"] = back.numpy()
        results[f"forward_grad_{grad_mode}"] = tape.gradient(forward, volume, output_gradients=sinogram).numpy()
        results[f"back_grad_{grad_mode}"] = tape.gradient(back, sinogram, output_gradients=volume).numpy()
    np.savez(out_path, **results)


if __name__ == "__main__":
    threads, out = int(sys.argv[1]), sys.argv[2]
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    run_all(out)
