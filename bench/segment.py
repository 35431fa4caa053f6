"""Segmentation U-Net training speed and memory: steps/s and peak RSS per configuration and size.

Usage: ``python bench/segment.py [--sizes 64 128] [--unets cicek nnunet] [--base_filters 32] [--steps 5]``
(batch 1, Dice + CE loss, Adam). Each configuration runs in a fresh subprocess so its peak RSS
(``ru_maxrss``) is its own. Prints one table row per (unet, size).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(unet: str, size: int, base_filters: int, steps: int) -> dict[str, float]:
    """Train ``steps`` steps (after one warm-up step) of one U-Net on random data; in this process."""
    import keras
    import tensorflow as tf

    from fedsim_tf.losses.segmentation import dice_ce_loss
    from fedsim_tf.models.unet3d import build_unet3d

    keras.utils.set_random_seed(0)
    model = build_unet3d(unet, (size,) * 3, base_filters)
    optimizer = keras.optimizers.Adam(1e-3)
    images = tf.random.normal((1, size, size, size, 1))
    labels = tf.cast(tf.random.uniform((1, size, size, size)) > 0.7, tf.uint8)

    @tf.function
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = dice_ce_loss(labels, model(images, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    step().numpy()
    start = time.perf_counter()
    for _ in range(steps):
        step().numpy()
    elapsed = time.perf_counter() - start
    return {"steps_per_s": steps / elapsed, "params": float(model.count_params()),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--unets", nargs="+", default=["cicek", "nnunet"])
    parser.add_argument("--base_filters", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--child", nargs=2, metavar=("UNET", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = measure(args.child[0], int(args.child[1]), args.base_filters, args.steps)
        print(json.dumps(result))
        return
    print(f"batch 1, base_filters {args.base_filters}, {args.steps} timed steps, {os.cpu_count()} CPUs")
    print(f"{'unet':8s} {'size':>5s} {'params':>10s} {'steps/s':>9s} {'s/step':>8s} {'peak RSS MiB':>13s}")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    for unet in args.unets:
        for size in args.sizes:
            command = [sys.executable, __file__, "--child", unet, str(size),
                       "--base_filters", str(args.base_filters), "--steps", str(args.steps)]
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                why = (f"killed by signal {-done.returncode} (out of memory?)" if done.returncode < 0
                       else (done.stderr.strip().splitlines() or ["no message"])[-1])
                print(f"{unet:8s} {size:5d}  failed: {why}", flush=True)
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{unet:8s} {size:5d} {r['params']:10.0f} {r['steps_per_s']:9.3f} "
                  f"{1 / r['steps_per_s']:8.2f} {r['peak_rss_mib']:13.0f}", flush=True)


if __name__ == "__main__":
    main()
