"""Runs the toy federation on 3 logical CPU devices in a fresh process and pickles what it observed.

TensorFlow's logical devices must be configured before it initialises them, which pytest's process
has already done; the tests therefore run this module as a subprocess:

    python -m tests.federation.harness main OUT.pkl CHECKPOINT_DIR    # rounds, errors, shape op, half a resume
    python -m tests.federation.harness resume OUT.pkl CHECKPOINT_DIR  # restore and finish the resumed run

Nothing is asserted here: the tests compare the pickled observations with the float64 references of
:mod:`tests.federation.toy`.
"""

from __future__ import annotations

import os
import pickle
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from fedsim_tf.federation.devices import configure_site_devices  # noqa: E402

SITES = ("A", "B", "C")
tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(3)
DEVICES = configure_site_devices(len(SITES), "CPU")
tf.config.experimental.enable_op_determinism()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from fedsim_tf.federation import roles  # noqa: E402
from fedsim_tf.federation.strategy import FederatedEngine, site_strategy  # noqa: E402
from tests.federation import toy  # noqa: E402

RESUME_ROUNDS, RESUME_SPLIT = 4, 2


class RecordingReduction(tf.distribute.ReductionToOneDevice):
    """``ReductionToOneDevice`` that records the shape of every tensor it reduces or broadcasts."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, tuple[int, ...]]] = []

    def reduce(self, reduce_op, per_replica_value, destinations, options=None):
        self.log.append(("reduce", tuple(tf.distribute.get_strategy().experimental_local_results(
            per_replica_value)[0].shape)))
        return super().reduce(reduce_op, per_replica_value, destinations, options)

    def batch_reduce(self, reduce_op, value_destination_pairs, options=None):
        for value, _ in value_destination_pairs:
            self.log.append(("reduce", tuple(value.values[0].shape)))
        return super().batch_reduce(reduce_op, value_destination_pairs, options)

    def broadcast(self, tensor, destinations):
        self.log.append(("broadcast", tuple(tensor.shape)))
        return super().broadcast(tensor, destinations)


class Federation:
    """The toy federation on its own strategy: engine, shared models, sites."""

    def __init__(self, server: str = "sgd", names: tuple[str, ...] = SITES) -> None:
        self.reduction = RecordingReduction()
        strategy = site_strategy(DEVICES, self.reduction)
        with strategy.scope():
            self.encoder, self.decoder = toy.build_shared()
            self.server = keras.optimizers.SGD(1.0) if server == "sgd" else keras.optimizers.Adam(0.05)
        shared = self.encoder.trainable_variables + self.decoder.trainable_variables
        self.engine = FederatedEngine(strategy, shared, self.server)
        self.sites = []
        for index, name in enumerate(names):
            with self.engine.site_device(index):
                self.sites.append(toy.build_site(name, self.encoder, self.decoder))

    def shared(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.engine.shared_variables]

    def state(self) -> dict:
        state = {f"shared/{i}": w for i, w in enumerate(self.shared())}
        state |= {f"server/{i}": np.asarray(v) for i, v in enumerate(self.server.variables)}
        for site in self.sites:
            state |= {f"{site.site.name}/{key}": value for key, value in site.state().items()}
        return state

    def checkpoint(self) -> tf.train.Checkpoint:
        sites = {site.site.name: tf.train.Checkpoint(**site.trackables()) for site in self.sites}
        return tf.train.Checkpoint(encoder=self.encoder, decoder=self.decoder, server=self.server, **sites)

    def run(self, variant: str, start: int, rounds: int) -> list[dict]:
        """Rounds ``start .. start + rounds - 1``; returns their results and how often each function was traced."""
        federated_round = self.engine.compile_round([site.site for site in self.sites])
        iterator = self.engine.site_inputs(toy.dataset_fn(variant), start)
        results = [federated_round(iterator, r)._asdict() for r in range(start, start + rounds)]
        self.tracings = federated_round.tracing_counts()
        return results


def one_round(variant: str) -> dict:
    federation = Federation()
    before = {"shared": federation.shared(), "private": [site.state() for site in federation.sites]}
    federation.reduction.log.clear()
    result = federation.run(variant, 0, 1)[0]
    mirrors = [all(np.array_equal(c.numpy(), v.numpy()) for c in roles.tf_variable(v).values)
               for v in federation.engine.shared_variables]
    return {
        "before": before,
        "after": {"shared": federation.shared(), "private": [site.state() for site in federation.sites]},
        "result": result,
        "batches": [[t.numpy() for t in toy.batch(s, 0, variant)] for s in range(len(SITES))],
        "mirror_copies_equal": mirrors,
        "reductions": list(federation.reduction.log),
        "placement": placement(federation),
    }


def placement(federation: Federation) -> dict:
    """For every variable of the federation: its role, whether it is mirrored and its device(s)."""
    rows = []
    groups = [("shared", v) for v in federation.engine.shared_variables]
    groups += [("server", v) for v in federation.server.variables]
    for index, site in enumerate(federation.sites):
        groups += [(f"private{index}", v) for v in site.site.private_variables()]
        groups += [(f"private{index}", v) for optimizer in site.optimizers.values() for v in optimizer.variables]
    for role, variable in groups:
        variable = roles.tf_variable(variable)
        mirrored = isinstance(variable, tf.distribute.DistributedValues)
        devices = [c.device for c in variable.values] if mirrored else [variable.device]
        rows.append({"role": role, "mirrored": mirrored, "devices": devices, "shape": tuple(variable.shape)})
    return {"rows": rows, "site_devices": list(DEVICES)}


def error_of(action) -> str:
    try:
        action()
    except (ValueError, RuntimeError) as error:
        return str(error)
    return "no error"


def errors() -> dict:
    federation = Federation()
    engine, sites = federation.engine, [site.site for site in federation.sites]
    one_phase = roles.Site("B", sites[1].phases[:1])
    with engine.site_device(0):
        misplaced = toy.build_site("B", federation.encoder, federation.decoder).site
    fit = sites[2].phases[0]
    stolen = roles.Site("C", [roles.Phase(fit.losses, [roles.PrivateUpdate("fit", [federation.sites[0].codes],
                                                                           fit.updates[0].optimizer), fit.updates[1]],
                                          shared_loss="fit"), sites[2].phases[1]])

    def empty_fn(site: int, start: int) -> tf.data.Dataset:
        return toy.dataset_fn()(site, start).take(0 if site == 1 else 5)

    def static_fn(site: int, start: int) -> tf.data.Dataset:
        if site != 1:
            return toy.dataset_fn()(site, start)
        return tf.data.Dataset.range(start, 1 << 30).map(lambda r: toy.batch(site, r))

    return {
        "too_late": error_of(lambda: configure_site_devices(2, "CPU")),
        "again": configure_site_devices(len(SITES), "CPU"),
        "count": error_of(lambda: engine.compile_round(sites[:2])),
        "structure": error_of(lambda: engine.compile_round([sites[0], one_phase, sites[2]])),
        "device": error_of(lambda: engine.compile_round([sites[0], misplaced, sites[2]])),
        "owner": error_of(lambda: engine.compile_round([sites[0], sites[1], stolen])),
        "empty": error_of(lambda: engine.site_inputs(empty_fn, 0)),
        "spec": error_of(lambda: engine.site_inputs(static_fn, 0)),
    }


def shape_op_round() -> dict:
    """One round whose loss runs the real shape op (``tf.numpy_function`` forward and finite-difference
    gradient) inside the replica functions, with the eager single-device gradients of each site."""
    from fedsim_tf.grid import Grid
    from fedsim_tf.shape.shape_op import ShapeRenderer, render_shapes
    from tests.shape.toy_heart import ToySSM

    renderer = ShapeRenderer(ToySSM(), Grid.centred(16, 84.0, centre_mm=(2.0, 0.0, 6.0)))
    rng = np.random.default_rng(5)
    targets = [renderer.labels(0.5 * rng.standard_normal((2, renderer.num_params))) > 0 for _ in SITES]
    strategy = site_strategy(DEVICES)
    with strategy.scope():
        generator = keras.Sequential([keras.Input((4,)), keras.layers.Dense(renderer.num_params)])
        generator.set_weights([(0.3 * rng.standard_normal((4, renderer.num_params))).astype(np.float32),
                               np.zeros(renderer.num_params, np.float32)])
        server = keras.optimizers.SGD(1.0)
    engine = FederatedEngine(strategy, generator.trainable_variables, server)
    codes, sites = [], []

    def iou_loss(codes: tf.Variable, batch: tuple[tf.Tensor, tf.Tensor]) -> dict[str, tf.Tensor]:
        _, mask = render_shapes(generator(tf.gather(codes, batch[0])), renderer)
        inter = tf.reduce_sum(mask * batch[1])
        return {"iou_loss": 1.0 - inter / (tf.reduce_sum(mask) + tf.reduce_sum(batch[1]) - inter)}

    for index, name in enumerate(SITES):
        with engine.site_device(index):
            codes.append(tf.Variable(rng.standard_normal((2, 4)).astype(np.float32)))
            optimizer = keras.optimizers.RMSprop(0.01)
            optimizer.build([codes[-1]])
        loss = lambda batch, c=codes[-1]: iou_loss(c, batch)  # noqa: E731
        sites.append(roles.Site(name, [roles.Phase(loss, [roles.PrivateUpdate("iou_loss", [codes[-1]], optimizer)],
                                                   shared_loss="iou_loss")]))
    batches = [(tf.constant([0, 1]), tf.constant(t, tf.float32)) for t in targets]
    eager = []
    for c, b in zip(codes, batches):
        with tf.GradientTape() as tape:
            total = iou_loss(c, b)["iou_loss"]
        eager.append([g.numpy() for g in tape.gradient(total, generator.trainable_variables)])
    before = [v.numpy() for v in generator.trainable_variables]
    iterator = engine.site_inputs(lambda site, start: tf.data.Dataset.from_tensors(batches[site]).repeat(), 0)
    result = engine.compile_round(sites)(iterator)
    return {"before": before, "after": [v.numpy() for v in generator.trainable_variables], "eager": eager,
            "result": result._asdict()}


def shared_state_round() -> dict:
    """One round of a shared model with BatchNorm (moving statistics as ``shared_state``), site B non-finite;
    with the statistics each site's batch gives a single-device copy of the model."""

    def build() -> keras.Model:
        source = keras.Input((4,))
        model = keras.Model(source, keras.layers.Dense(1)(keras.layers.BatchNormalization()(source)))
        # gamma, beta, moving mean, moving variance, kernel, bias
        model.set_weights([np.ones(4, np.float32), np.zeros(4, np.float32), np.zeros(4, np.float32),
                           np.ones(4, np.float32), np.full((4, 1), 0.5, np.float32), np.zeros(1, np.float32)])
        return model

    batches = [toy.batch(s, 0, "nan")[0][:2] for s in range(len(SITES))]
    strategy = site_strategy(DEVICES)
    with strategy.scope():
        model = build()
        server = keras.optimizers.SGD(0.1)
    engine = FederatedEngine(strategy, model.trainable_variables, server, shared_state=model.non_trainable_variables)

    def loss(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"mse": tf.reduce_mean(tf.square(model(x, training=True)))}

    result = engine.compile_round([roles.Site(name, [roles.Phase(loss, shared_loss="mse")]) for name in SITES])(
        engine.site_inputs(lambda site, start: tf.data.Dataset.from_tensors(batches[site]).repeat()))
    single = []
    for x in batches:
        copy = build()
        copy(x, training=True)
        single.append([v.numpy() for v in copy.non_trainable_variables])
    return {"result": result._asdict(), "single": single,
            "copies": [[c.numpy() for c in roles.tf_variable(v).values] for v in model.non_trainable_variables]}


def main(argv: list[str]) -> None:
    mode, out, checkpoint_dir = argv[1:4]
    if mode == "main":
        observed = {variant: one_round(variant) for variant in ("clean", "noise", "nan")}
        observed["errors"] = errors()
        straight = Federation("adam")
        observed["straight_results"] = straight.run("late_nan", 0, RESUME_ROUNDS)
        observed["straight"] = straight.state()
        observed["tracings"] = straight.tracings
        first = Federation("adam")
        observed["first_results"] = first.run("late_nan", 0, RESUME_SPLIT)
        first.checkpoint().write(os.path.join(checkpoint_dir, "half"))
        observed["shape_op"] = shape_op_round()
        observed["shared_state"] = shared_state_round()
    else:
        resumed = Federation("adam")
        resumed.checkpoint().read(os.path.join(checkpoint_dir, "half")).assert_consumed()
        observed = {"resumed_results": resumed.run("late_nan", RESUME_SPLIT, RESUME_ROUNDS - RESUME_SPLIT),
                    "resumed": resumed.state()}
    with open(out, "wb") as file:
        pickle.dump(observed, file)


if __name__ == "__main__":
    main(sys.argv)
