"""Cost of one federated round against the three single-site steps it replaces, and peak RSS.

Three sites on three logical CPU devices (``configure_site_devices``, before TensorFlow starts). Each
site has models of a GauGAN-like cost on ``size^2`` slices: a shared generator (codes -> dense ->
two upsampling conv blocks -> slice, the stand-in of ``G_S``/``G_M``), and private codes (RMSprop),
a private conv enhancer (Adam, phase 1 with the shared generator) and a private conv critic (Adam,
phase 2). Measured, each compiled and warmed up, median of ``--repeats`` calls taken in turns (a
round, then each single-site step, repeated), so that other load on the machine hits all alike:

* the round: :class:`FederatedRound` (local steps on all sites + aggregate + server step);
* site ``i`` alone: :func:`roles.site_step` on site ``i``'s batch plus the server step on a
  non-distributed copy of the shared generator (what single-site training does per step).

Target: the round costs at most 1.2x the sum of the three single-site steps on CPU.

    python -m bench.federated [--size=64] [--batch=4] [--repeats=15]
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import resource  # noqa: E402
import time  # noqa: E402

from absl import app, flags  # noqa: E402

flags.DEFINE_integer("size", 64, "Slice size (pixels per side), a multiple of 4.", lower_bound=8)
flags.DEFINE_integer("batch", 4, "Slices per site per round.", lower_bound=1)
flags.DEFINE_integer("repeats", 15, "Timed calls per measurement (after 3 warm-up calls).", lower_bound=3)
flags.DEFINE_integer("width", 32, "Convolution channels.", lower_bound=1)

FLAGS = flags.FLAGS
SITES = 3
LATENT = 16
CODES = 8
TARGET = 1.2


def _conv_stack(name: str, size: int, channels_in: int, width: int):
    import keras

    source = keras.Input((size, size, channels_in))
    hidden = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(source)
    hidden = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(hidden)
    hidden = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(hidden)
    return keras.Model(source, keras.layers.Conv2D(1, 3, padding="same")(hidden), name=name)


def _generator(size: int, width: int):
    import keras

    source = keras.Input((LATENT,))
    quarter = size // 4
    hidden = keras.layers.Reshape((quarter, quarter, width))(keras.layers.Dense(quarter * quarter * width)(source))
    for _ in range(2):
        hidden = keras.layers.UpSampling2D()(hidden)
        hidden = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(hidden)
    return keras.Model(source, keras.layers.Conv2D(1, 3, padding="same", activation="tanh")(hidden), name="generator")


def _site(name: str, generator, codes, enhancer, critic, optimizers):
    import tensorflow as tf

    from fedsim_tf.federation import roles

    def enhanced(batch):
        indices, _ = batch
        return enhancer(generator(tf.gather(codes, indices)))

    def fit(batch):
        return {"fit": tf.reduce_mean(tf.abs(enhanced(batch) - batch[1]))}

    def judge(batch):
        fake = tf.stop_gradient(enhanced(batch))
        hinge = tf.reduce_mean(tf.nn.relu(1.0 + critic(fake))) + tf.reduce_mean(tf.nn.relu(1.0 - critic(batch[1])))
        return {"critic": hinge}

    return roles.Site(name, [
        roles.Phase(fit, [roles.PrivateUpdate("fit", [codes], optimizers[0]),
                          roles.PrivateUpdate("fit", enhancer.trainable_variables, optimizers[1])], shared_loss="fit"),
        roles.Phase(judge, [roles.PrivateUpdate("critic", critic.trainable_variables, optimizers[2])]),
    ])


def _private(size: int, width: int, seed: int):
    import keras
    import numpy as np
    import tensorflow as tf

    codes = tf.Variable(np.random.default_rng(seed).standard_normal((CODES, LATENT)).astype(np.float32))
    enhancer, critic = _conv_stack("enhancer", size, 1, width), _conv_stack("critic", size, 1, width)
    optimizers = [keras.optimizers.RMSprop(1e-2), keras.optimizers.Adam(1e-4), keras.optimizers.Adam(4e-4)]
    for optimizer, variables in zip(optimizers, ([codes], enhancer.trainable_variables, critic.trainable_variables)):
        optimizer.build(variables)
    return codes, enhancer, critic, optimizers


def _single_step(site, shared, server):
    """Single-site training's compiled step: the site's step, then the server update on its own copy."""
    import tensorflow as tf

    from fedsim_tf.federation import roles

    @tf.function
    def step(data):  # variables by closure: as tf.function arguments they would not be the models' variables
        report = roles.site_step(site, shared, data)
        roles.apply_server_update(server, shared, report.shared_gradients)
        return report.losses

    return step


def _median_seconds(calls: list, repeats: int) -> list[float]:
    """Median wall time of each call; the calls take turns, so that a load change hits all alike."""
    for call in calls:
        for _ in range(3):
            call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, record in zip(calls, times):
            start = time.perf_counter()
            call()
            record.append(time.perf_counter() - start)
    return [sorted(record)[len(record) // 2] for record in times]


def main(argv: list[str]) -> None:
    del argv
    from fedsim_tf.federation.devices import configure_site_devices

    devices = configure_site_devices(SITES, "CPU")
    import keras
    import numpy as np
    import tensorflow as tf

    from fedsim_tf.federation.strategy import FederatedEngine, site_strategy

    tf.get_logger().setLevel("WARNING")  # one INFO line per reduced tensor when the server step is traced
    size, width, batch = FLAGS.size, FLAGS.width, FLAGS.batch
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    batches = [(tf.constant(rng.choice(CODES, batch, replace=False), tf.int32),
                tf.constant(rng.uniform(-1, 1, (batch, size, size, 1)), tf.float32)) for _ in range(SITES)]

    strategy = site_strategy(devices)
    with strategy.scope():
        generator = _generator(size, width)
        server = keras.optimizers.Adam(1e-4)
    engine = FederatedEngine(strategy, generator.trainable_variables, server)
    sites, singles = [], []
    for index in range(SITES):
        with engine.site_device(index):
            private = _private(size, width, index)
            sites.append(_site(f"site{index}", generator, *private))
            single_generator = _generator(size, width)
            single_generator.set_weights(generator.get_weights())
            single_server = keras.optimizers.Adam(1e-4)
            single_server.build(single_generator.trainable_variables)
            singles.append((_site(f"single{index}", single_generator, *_private(size, width, index)),
                            single_generator, single_server))
    federated_round = engine.compile_round(sites)
    iterator = engine.site_inputs(lambda site, start: tf.data.Dataset.from_tensors(batches[site]).repeat())
    calls = [lambda: federated_round(iterator)]
    for index, (site, single_generator, single_server) in enumerate(singles):
        step = _single_step(site, single_generator.trainable_variables, single_server)
        calls.append(lambda step=step, index=index: step(batches[index]))
    round_seconds, *single_seconds = _median_seconds(calls, FLAGS.repeats)
    total = sum(single_seconds)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"federated round vs single-site steps: {SITES} sites on logical CPUs, {size}^2 slices, batch {batch}, "
          f"conv width {width}, {os.cpu_count()} CPU(s), median of {FLAGS.repeats}")
    for index, seconds in enumerate(single_seconds):
        print(f"  single-site step, site {index}: {1000 * seconds:8.1f} ms")
    print(f"  sum of single-site steps:     {1000 * total:8.1f} ms")
    print(f"  federated round:              {1000 * round_seconds:8.1f} ms")
    verdict = "OK" if round_seconds <= TARGET * total else "OVER"
    print(f"  ratio round / sum:            {round_seconds / total:8.2f}  ({verdict}, target <= {TARGET})")
    print(f"  peak RSS:                     {peak_mb:8.0f} MB")


if __name__ == "__main__":
    app.run(main)
