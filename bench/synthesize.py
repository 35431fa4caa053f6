"""Seconds per synthetic volume and peak RSS of the ``synthesize`` stage's generative process, at the demo
and the paper's sizes (CPU).

    python -m bench.synthesize [--presets=demo,paper] [--volumes=3] [--materials=learned,fixmat]

One fresh subprocess per preset (its own peak RSS) builds the generative model at that size with
untrained weights (speed does not depend on training): ``G_S``/``G_M`` and the CT simulator of
:func:`fedsim_tf.models.generators.build_generators` / :func:`fedsim_tf.physics.ct_simulator.simulator_for`
and the site GAN of :func:`fedsim_tf.training.gan.build_gan_models`. A volume is what the stage does
per sample: shape parameters, label map, CT simulation (``learned``: G_M's coarse map on the coarse
grid, upsampled; ``fixmat``: the atlas on the label grid), ``G_GAN`` over every slice in batches of 16,
and writing both NIfTI files. ``first`` includes tracing; ``s/volume`` is the mean of the next
``--volumes``. Targets on 2 cores: demo <= 5 s, paper <= 60 s per volume, peak RSS <= 8 GB.

Presets: ``demo`` = flags/demo.cfg (64^3 labels, 16^3 material, 32 views, GAN ngf 32 with 4
upsamplings); ``paper`` = flags/paper.cfg (128^3, 16^3, 64 views, ngf 64 with 5 upsamplings).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from absl import app, flags

flags.DEFINE_list("presets", ["demo", "paper"], "Sizes to measure.")
flags.DEFINE_integer("volumes", 3, "Volumes timed per preset and material (after a first, traced one).", lower_bound=1)
flags.DEFINE_list("materials", ["learned", "fixmat"], "Simulator material modes to time.")
flags.DEFINE_string("child", "", "Internal: run one preset in this process and print its JSON.")

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = {
    "demo": {"size": 64, "coarse": 16, "views": 32, "ngf": 32, "num_upsamplings": 4},
    "paper": {"size": 128, "coarse": 16, "views": 64, "ngf": 64, "num_upsamplings": 5},
}
TARGET_S = {"demo": 5.0, "paper": 60.0}
RSS_LIMIT_GB = 8.0


def _measure(preset: str, volumes: int, materials: list[str]) -> dict[str, object]:
    import numpy as np

    from fedsim_tf.data.labels import MMWHS_TABLE, encode_labels
    from fedsim_tf.data.nifti import write_nifti
    from fedsim_tf.grid import Grid
    from fedsim_tf.intensity import unit_to_hu
    from fedsim_tf.models.generative_model import GenerativeModel
    from fedsim_tf.models.generators import build_generators
    from fedsim_tf.physics.ct_simulator import simulator_for
    from fedsim_tf.physics.simulated_scanner import SimulatedScanner
    from fedsim_tf.shape.parameters import FiniteDifferenceSteps, ShapeBounds
    from fedsim_tf.shape.ssm import default_ssm
    from fedsim_tf.synthesis.synthesizer import Synthesizer
    from fedsim_tf.training.gan import build_gan_models
    from fedsim_tf.training.gan_settings import GANSettings

    sizes = PRESETS[preset]
    ssm = default_ssm()
    model = GenerativeModel(
        latent_dim=16, n_modes=int(np.asarray(ssm.stddevs).shape[0]), bounds=ShapeBounds(),
        label_grid=Grid.centred(sizes["size"], 160.0, tuple(ssm.mean.centre())), coarse_size=sizes["coarse"],
        scanner=SimulatedScanner(views=sizes["views"]), fd_steps=FiniteDifferenceSteps(), ssm="default")

    class Networks:  # what Synthesizer needs of a pre-trained model
        def __init__(self) -> None:
            self.model = model
            self.shape_generator, self.material_generator = build_generators(model, seed=0)
            self.simulator = simulator_for(model, ssm, "learned")

    generator, _ = build_gan_models(GANSettings(ngf=sizes["ngf"], num_upsamplings=sizes["num_upsamplings"]),
                                    sizes["size"])
    rng = np.random.default_rng(0)
    result: dict[str, object] = {"preset": preset}
    with tempfile.TemporaryDirectory() as out:
        for material in materials:
            synthesizer = Synthesizer(Networks(), generator, material, slice_batch=16)
            codes = rng.normal(size=(volumes + 1, model.latent_dim)).astype(np.float32) * 0.3
            params = synthesizer.shape_params(codes, "learned", rng)
            times = []
            for index in range(volumes + 1):
                start = time.perf_counter()
                volume = synthesizer.volume(codes[index], params[index], "none")
                hu = np.rint(unit_to_hu(np.clip(volume.image, -1.0, 1.0))).astype(np.int16)
                write_nifti(os.path.join(out, "synth_image.nii.gz"), hu, model.label_grid)
                write_nifti(os.path.join(out, "synth_label.nii.gz"), encode_labels(volume.labels, MMWHS_TABLE),
                            model.label_grid, dtype=np.uint16)
                times.append(time.perf_counter() - start)
            result[material] = {"first_s": times[0], "s_per_volume": float(np.mean(times[1:]))}
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0**2
    return result


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.child:
        print(json.dumps(_measure(FLAGS.child, FLAGS.volumes, FLAGS.materials)))
        return
    rows = []
    for preset in FLAGS.presets:
        command = [sys.executable, "-m", "bench.synthesize", f"--child={preset}", f"--volumes={FLAGS.volumes}",
                   f"--materials={','.join(FLAGS.materials)}"]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"})
        if done.returncode != 0:
            print(f"{preset}: failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{'preset':<7} {'material':<9} {'first s':>8} {'s/volume':>9} {'target':>7} {'peak RSS GB':>12}  "
          f"(os.cpu_count()={os.cpu_count()})")
    for row in rows:
        for material in FLAGS.materials:
            figures = row[material]
            verdict = "OK" if figures["s_per_volume"] <= TARGET_S[row["preset"]] else "OVER"
            rss = f"{row['peak_rss_gb']:.2f} {'OK' if row['peak_rss_gb'] <= RSS_LIMIT_GB else 'OVER'}"
            print(f"{row['preset']:<7} {material:<9} {figures['first_s']:>8.1f} {figures['s_per_volume']:>9.2f} "
                  f"{TARGET_S[row['preset']]:>5.0f} {verdict:<4} {rss:>12}")


if __name__ == "__main__":
    app.run(main)
