"""GauGAN appearance model speed and memory: seconds per synthetic volume, peak RSS, training s/step.

Usage: ``python -m bench.gan [--presets demo paper] [--volumes 2] [--train_steps 3] [--compare] [--ngf N]``

Presets (one fresh subprocess each, so every peak RSS is its own):

* ``demo``: 64 slices of 64^2; the paper network at half width in every layer (``ngf 32``, SPADE
  hidden 64) with one upsampling fewer for the half-size slice (4, the same 4x4 start grid);
  training batch 4.
* ``paper``: 128 slices of 128^2, ``ngf 64``, SPADE hidden 128, 5 upsamplings (GauGAN ``normal``),
  training batch 1.

Generation runs :class:`fedsim_tf.models.slice_synthesis.SliceSynthesizer` (batches of 16, oneDNN
graph, no XLA) on random conditioning maps of the right layout (coarse CT, one-hot labels, k/K
plane): ``first`` is the first volume (tracing included), ``s/volume`` the mean of the next
``--volumes``. Training is :meth:`fedsim_tf.training.gan.GANTrainer.train_step` (G step + D step),
without and with the VGG term (random VGG-19 weights: same cost as ImageNet ones), after one
warm-up step. ``--compare`` also times alternatives: generation of ``--compare_slices`` slices,
scaled to a volume, with batch 1 (a slice per call) and with XLA (``jit_compile=True``; the first
call, compilation included, apart), and the training step with XLA.
Peak RSS is ``ru_maxrss`` after generation (what ``synthesize`` needs) and at the end (training).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = {
    "demo": {"size": 64, "ngf": 32, "num_upsamplings": 4, "spade_hidden": 64, "train_batch": 4},
    "paper": {"size": 128, "ngf": 64, "num_upsamplings": 5, "spade_hidden": 128, "train_batch": 1},
}


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0**2


def _conditions(count: int, size: int, seed: int) -> np.ndarray:
    """``[count, size, size, 10]`` maps: blocky coarse CT, one-hot blocky labels, the k/K plane."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1, 1, (count, size // 8, size // 8)).repeat(8, 1).repeat(8, 2)
    labels = np.eye(8, dtype=np.float32)[rng.integers(0, 8, (count, size // 4, size // 4)).repeat(4, 1).repeat(4, 2)]
    plane = np.broadcast_to((np.arange(count) / count)[:, None, None, None], (count, size, size, 1))
    return np.concatenate([coarse[..., None], labels, plane], axis=-1).astype(np.float32)


def _time_volumes(synthesize: Callable[[np.ndarray], np.ndarray], conditions: np.ndarray, volumes: int) -> tuple[float, float, float]:
    """(wall seconds of the first call; wall and CPU seconds per call of the next ``volumes`` calls)."""
    start = time.perf_counter()
    synthesize(conditions)
    first = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(volumes):
        synthesize(conditions)
    return first, (time.perf_counter() - start) / volumes, (time.process_time() - cpu) / volumes


def measure(
    preset: str, volumes: int, train_steps: int, compare: bool, compare_slices: int, ngf: int | None
) -> dict[str, float]:
    """All figures of one preset (``ngf`` overriding its width when given), in this process."""
    import keras

    from fedsim_tf.losses.generation import PerceptualBackbone, vgg19_features
    from fedsim_tf.models.slice_synthesis import SliceSynthesizer
    from fedsim_tf.training.gan import GANTrainer, build_gan_models
    from fedsim_tf.training.gan_settings import GANSettings

    config = {**PRESETS[preset], **({"ngf": ngf} if ngf else {})}
    size = config["size"]
    settings = GANSettings(ngf=config["ngf"], num_upsamplings=config["num_upsamplings"],
                           spade_hidden=config["spade_hidden"], batch_size=config["train_batch"])
    generator, discriminator = build_gan_models(settings, size)
    conditions = _conditions(size, size, 0)
    result: dict[str, float] = {"g_params": float(generator.count_params())}
    result["first_volume_s"], result["volume_s"], result["volume_cpu_s"] = _time_volumes(
        SliceSynthesizer(generator), conditions, volumes
    )
    result["generate_rss_gb"] = _peak_rss_gb()
    if compare:
        subset = conditions[:compare_slices]
        _, per_call, cpu = _time_volumes(SliceSynthesizer(generator, batch_size=1), subset, 1)
        result["batch1_volume_s"], result["batch1_volume_cpu_s"] = (per_call * size / compare_slices, cpu * size / compare_slices)
        result["xla_compile_s"], per_call, cpu = _time_volumes(SliceSynthesizer(generator, jit_compile=True), subset, 1)
        result["xla_volume_s"], result["xla_volume_cpu_s"] = per_call * size / compare_slices, cpu * size / compare_slices
    batch = config["train_batch"]
    condition, real = conditions[:batch], np.tanh(conditions[:batch, :, :, :1] * 2.0)
    vgg = PerceptualBackbone(vgg19_features(None, size), "random VGG-19")
    runs = {"train_s": (None, False), "train_vgg_s": (vgg, False), **({"train_xla_s": (None, True)} if compare else {})}
    for name, (backbone, jit_compile) in runs.items():
        keras.utils.set_random_seed(0)
        trainer = GANTrainer(generator, discriminator, dataclasses.replace(settings, jit_compile=jit_compile), backbone)
        start = time.perf_counter()
        trainer.train_step(condition, real)
        result[name + "_first"] = time.perf_counter() - start
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(train_steps):
            trainer.train_step(condition, real)
        result[name] = (time.perf_counter() - start) / train_steps
        result[name + "_cpu"] = (time.process_time() - cpu) / train_steps
    result["peak_rss_gb"] = _peak_rss_gb()
    return result


def _pair(result: dict[str, float], wall: str, cpu: str) -> str:
    return f"{result[wall]:.2f} [{result[cpu]:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--volumes", type=int, default=2, help="volumes timed after the first")
    parser.add_argument("--train_steps", type=int, default=3, help="training steps timed after the first")
    parser.add_argument("--compare", action="store_true", help="also time batch 1 and XLA generation")
    parser.add_argument("--compare_slices", type=int, default=32, help="slices timed per alternative")
    parser.add_argument("--ngf", type=int, help="override the presets' generator width (e.g. to weigh a smaller demo)")
    parser.add_argument("--child", choices=list(PRESETS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if min(args.volumes, args.train_steps, args.compare_slices, args.ngf or 1) < 1:
        parser.error("--volumes, --train_steps, --compare_slices and --ngf must be >= 1")
    if args.child:
        print(json.dumps(measure(args.child, args.volumes, args.train_steps, args.compare, args.compare_slices, args.ngf)))
        return
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "TF_CPP_MIN_LOG_LEVEL": "3"}
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; generation in batches of 16 (oneDNN graph); "
          "training: G step + D step. Times: wall s [CPU s of this process]")
    header = (f"{'preset':7s} {'slices':>9s} {'ngf/hid/up':>10s} {'G params':>8s} {'first s':>7s} {'s/volume':>15s} "
              f"{'RSS GB':>6s} {'train s/step':>18s} {'+VGG s/step':>15s} {'peak GB':>7s}")
    print(header + ("  batch-1 s/volume   XLA s/volume (first call s)   XLA train s/step (first s)" if args.compare else ""))
    for preset in args.presets:
        command = [sys.executable, "-m", "bench.gan", "--child", preset, "--volumes", str(args.volumes),
                   "--train_steps", str(args.train_steps), "--compare_slices", str(args.compare_slices)]
        command += ["--ngf", str(args.ngf)] if args.ngf else []
        done = subprocess.run(command + (["--compare"] if args.compare else []), cwd=ROOT, capture_output=True,
                              text=True, env=env)
        if done.returncode != 0:
            why = (f"killed by signal {-done.returncode} (out of memory?)" if done.returncode < 0
                   else (done.stderr.strip().splitlines() or ["no message"])[-1])
            print(f"{preset:7s} failed: {why}", flush=True)
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        c = {**PRESETS[preset], **({"ngf": args.ngf} if args.ngf else {})}
        slices, widths = f"{c['size']}x{c['size']}^2", f"{c['ngf']}/{c['spade_hidden']}/{c['num_upsamplings']}"
        train = f"{_pair(r, 'train_s', 'train_s_cpu')} b{c['train_batch']}"
        line = (f"{preset:7s} {slices:>9s} {widths:>10s} {r['g_params'] / 1e6:7.1f}M {r['first_volume_s']:7.1f} "
                f"{_pair(r, 'volume_s', 'volume_cpu_s'):>15s} {r['generate_rss_gb']:6.2f} "
                f"{train:>18s} "
                f"{_pair(r, 'train_vgg_s', 'train_vgg_s_cpu'):>15s} {r['peak_rss_gb']:7.2f}")
        if args.compare:
            line += (f"  {_pair(r, 'batch1_volume_s', 'batch1_volume_cpu_s'):>16s}  "
                     f"{_pair(r, 'xla_volume_s', 'xla_volume_cpu_s'):>12s} ({r['xla_compile_s']:.0f})  "
                     f"{_pair(r, 'train_xla_s', 'train_xla_s_cpu'):>20s} ({r['train_xla_s_first']:.0f})")
        print(line, flush=True)


if __name__ == "__main__":
    main()
