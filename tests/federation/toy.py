"""A toy federation for the engine's tests, and its float64 reference computations.

Shared: ``encoder`` (Dense 4 -> 3, tanh) and ``decoder`` (Dense 3 -> 2), the stand-ins of G_S/G_M.
Per site, private: ``codes`` ``[5, 2]`` (one per "volume", RMSprop, projected onto the unit ball),
``head`` (Dense 2 -> 1, Adam) and ``critic`` (Dense 1 -> 1, its own Adam): the stand-ins of the
codes, the GAN generator and its discriminator. A site's round has two phases:

1. ``fit = mean(square(head(decoder(encoder(x)) + codes[idx]) - y))``, the square taken by a
   ``tf.numpy_function`` with a NumPy gradient (as the shape op does); its gradient goes to the
   server (shared) and to ``codes`` and ``head``;
2. ``critic = mean(critic(stop_gradient(prediction))^2)`` after phase 1's update: ``critic`` only.

Every shape is distinct between the shared and the private variables, so a reduced tensor's shape
names the variable it belongs to. Weights come from NumPy generators seeded by name (the same in
every process); batches from stateless ops seeded by (site, round).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from fedsim_tf.federation import roles

CODES = 5
ADAM = {"head": 0.01, "critic": 0.02}
RMSPROP = 0.05
EPSILON = 1e-7  # Keras' default epsilon of Adam and RMSprop
SHARED_SHAPES = [(4, 3), (3,), (3, 2), (2,)]


def _weights(name: str, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    rng = np.random.default_rng([sum(map(ord, name)), len(name)])
    return [(0.7 * rng.standard_normal(shape)).astype(np.float32) for shape in shapes]


def _dense(name: str, inputs: int, units: int, activation: str | None = None) -> keras.Model:
    source = keras.Input((inputs,))
    model = keras.Model(source, keras.layers.Dense(units, activation=activation)(source), name=name)
    model.set_weights(_weights(name, [(inputs, units), (units,)]))
    return model


def build_shared() -> tuple[keras.Model, keras.Model]:
    """``(encoder, decoder)``; build inside ``strategy.scope()`` for the engine."""
    return _dense("encoder", 4, 3, "tanh"), _dense("decoder", 3, 2)


def unit_ball(codes: tf.Tensor) -> tf.Tensor:
    """Rows scaled to norm at most 1."""
    return codes / tf.maximum(tf.norm(codes, axis=1, keepdims=True), 1.0)


@tf.custom_gradient
def numpy_square(t: tf.Tensor) -> tuple[tf.Tensor, object]:
    """``t**2`` computed by NumPy, with a NumPy vector-Jacobian product (the shape op's pattern)."""
    value = tf.numpy_function(np.square, [t], tf.float32, stateful=False)
    value.set_shape(t.shape)

    def grad(upstream: tf.Tensor) -> tf.Tensor:
        g = tf.numpy_function(lambda a, u: (2.0 * a * u).astype(np.float32), [t, upstream], tf.float32, stateful=False)
        g.set_shape(t.shape)
        return g

    return value, grad


@dataclass
class ToySite:
    """One site's private state and its program."""

    site: roles.Site
    codes: tf.Variable
    head: keras.Model
    critic: keras.Model
    optimizers: dict[str, keras.optimizers.Optimizer]

    def state(self) -> dict[str, np.ndarray]:
        """Every private variable and optimiser variable, by a stable name."""
        values = {"codes": self.codes.numpy()}
        values |= {f"head/{i}": w for i, w in enumerate(self.head.get_weights())}
        values |= {f"critic/{i}": w for i, w in enumerate(self.critic.get_weights())}
        for key, optimizer in self.optimizers.items():
            values |= {f"opt_{key}/{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)}
        return values

    def trackables(self) -> dict[str, object]:
        optimizers = {f"{key}_optimizer": optimizer for key, optimizer in self.optimizers.items()}
        return {"codes": self.codes, "head": self.head, "critic": self.critic} | optimizers


def build_site(name: str, encoder: keras.Model, decoder: keras.Model) -> ToySite:
    """Site ``name``'s private state (create it under the site's device), optimisers built, and its
    two-phase program."""
    codes = tf.Variable(_weights(name + "/codes", [(CODES, 2)])[0] * 1.2, name=f"{name}_codes")
    head, critic = _dense(name + "_head", 2, 1), _dense(name + "_critic", 1, 1)
    optimizers = {"codes": keras.optimizers.RMSprop(RMSPROP), "head": keras.optimizers.Adam(ADAM["head"]),
                  "critic": keras.optimizers.Adam(ADAM["critic"])}

    optimizers["codes"].build([codes])
    optimizers["head"].build(head.trainable_variables)
    optimizers["critic"].build(critic.trainable_variables)

    def prediction(batch: tuple[tf.Tensor, tf.Tensor, tf.Tensor]) -> tf.Tensor:
        x, idx, _ = batch
        return head(decoder(encoder(x)) + tf.gather(codes, idx))

    def fit(batch: tuple[tf.Tensor, tf.Tensor, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {"fit": tf.reduce_mean(numpy_square(prediction(batch) - batch[2]))}

    def critic_loss(batch: tuple[tf.Tensor, tf.Tensor, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {"critic": tf.reduce_mean(tf.square(critic(tf.stop_gradient(prediction(batch)))))}

    site = roles.Site(name, [
        roles.Phase(fit, [roles.PrivateUpdate("fit", [codes], optimizers["codes"], unit_ball),
                          roles.PrivateUpdate("fit", head.trainable_variables, optimizers["head"])], shared_loss="fit"),
        roles.Phase(critic_loss, [roles.PrivateUpdate("critic", critic.trainable_variables, optimizers["critic"])]),
    ])
    return ToySite(site, codes, head, critic, optimizers)


def batch(site: int, round_index: tf.Tensor | int, variant: str = "clean") -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Site ``site``'s batch of a round: ``x [B, 4]``, ``idx [B]`` distinct code rows, ``y [B, 1]``, ``B = 2 + site``.

    ``variant``: ``"clean"``; ``"noise"`` (site 1's x replaced by 10x noise of another seed); ``"nan"``
    (site 1's x is NaN in round 0); ``"late_nan"`` (site 2's x is NaN in round 2).
    """
    size = 2 + site
    round_index = tf.cast(round_index, tf.int64)
    seed = tf.stack([tf.constant(site, tf.int64), round_index])
    x = tf.random.stateless_normal([size, 4], seed=seed)
    if variant == "noise" and site == 1:
        x = 10.0 * tf.random.stateless_normal([size, 4], seed=seed + 1000)
    bad = {"nan": (1, 0), "late_nan": (2, 2)}.get(variant)
    if bad is not None and site == bad[0]:
        x = tf.where(tf.equal(round_index, bad[1]), tf.fill([size, 4], np.nan), x)
    idx = tf.cast((round_index + tf.range(size, dtype=tf.int64)) % CODES, tf.int32)
    y = tf.random.stateless_normal([size, 1], seed=seed + 7)
    return x, idx, y


def dataset_fn(variant: str = "clean"):
    """``(site, start_round) -> dataset`` of the site's batches from ``start_round`` on (batch dimension
    left unknown, since the sites' batch sizes differ)."""

    def make(site: int, start_round: int) -> tf.data.Dataset:
        rounds = tf.data.Dataset.range(start_round, 1 << 30).map(lambda r: batch(site, r, variant))
        return rounds.unbatch().batch(2 + site)

    return make


# --- float64 reference (plain TensorFlow ops, eager, one device; no engine code, no numpy_function) ---

def reference_round(shared: list[np.ndarray], private: dict[str, np.ndarray], data: tuple[np.ndarray, ...]) -> dict:
    """One site's step by hand, in float64.

    Args:
        shared: encoder kernel, bias, decoder kernel, bias (``SHARED_SHAPES``).
        private: ``codes``, ``head/0``, ``head/1``, ``critic/0``, ``critic/1`` before the round.
        data: the site's batch ``(x, idx, y)``.

    Returns:
        ``shared_grad`` (list like ``shared``) and the private variables after the round
        (first RMSprop / Adam steps from zero slots, then the unit-ball projection).
    """
    x, idx, y = (np.asarray(d) for d in data)
    w = [tf.Variable(np.asarray(v, np.float64)) for v in shared]
    codes = tf.Variable(np.asarray(private["codes"], np.float64))
    head = [tf.Variable(np.asarray(private[k], np.float64)) for k in ("head/0", "head/1")]
    critic = [tf.Variable(np.asarray(private[k], np.float64)) for k in ("critic/0", "critic/1")]
    x64, y64 = tf.constant(x, tf.float64), tf.constant(y, tf.float64)

    def predict() -> tf.Tensor:
        hidden = tf.tanh(x64 @ w[0] + w[1]) @ w[2] + w[3] + tf.gather(codes, idx)
        return hidden @ head[0] + head[1]

    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(predict() - y64))
    grads = tape.gradient(loss, w + [codes] + head)
    shared_grad = [g.numpy() for g in grads[:4]]
    codes_grad = tf.convert_to_tensor(grads[4]).numpy()
    new_codes = codes.numpy() - RMSPROP * codes_grad / np.sqrt(0.1 * codes_grad**2 + EPSILON)
    codes.assign(unit_ball(new_codes))
    for variable, g in zip(head, grads[5:]):
        variable.assign_sub(adam_first_step(g.numpy(), ADAM["head"]))
    with tf.GradientTape() as tape:
        critic_loss = tf.reduce_mean(tf.square(tf.stop_gradient(predict()) @ critic[0] + critic[1]))
    for variable, g in zip(critic, tape.gradient(critic_loss, critic)):
        variable.assign_sub(adam_first_step(g.numpy(), ADAM["critic"]))
    after = {"codes": codes.numpy(), "head/0": head[0].numpy(), "head/1": head[1].numpy(),
             "critic/0": critic[0].numpy(), "critic/1": critic[1].numpy()}
    return {"shared_grad": shared_grad, "private": after, "loss": float(loss)}


def adam_first_step(g: np.ndarray, lr: float, beta_1: float = 0.9, beta_2: float = 0.999) -> np.ndarray:
    """Keras Adam's first step from zero moments: ``alpha * m / (sqrt(v) + eps)``."""
    m, v = (1 - beta_1) * g, (1 - beta_2) * g**2
    alpha = lr * np.sqrt(1 - beta_2) / (1 - beta_1)
    return alpha * m / (np.sqrt(v) + EPSILON)
