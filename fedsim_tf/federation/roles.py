"""The site and server roles of federated training (paper Sec. 2.3, Fig. 2), as plain functions.

Protocol of one round (who sends what):

1. The server holds the **shared** variables (``G_S``, ``G_M``; the U-Net in Direct-FL) and its
   optimiser; every site starts the round with the same shared weights.
2. Each site takes one step on its **own** batch: :func:`site_step` runs the site's phases, applies
   the gradients of its **private** variables (its GAN, its latent codes) with its own optimisers,
   and returns the gradient of the shared variables, its losses and whether everything was finite.
   Only :attr:`SiteReport.shared_gradients` (and the finite flag) leaves the site.
3. The server checks each received update (:func:`validate_update`), leaves out sites that are not
   finite (:func:`aggregate`, logged by :func:`log_dropped`), averages (or sums) the rest and applies
   one update with its optimiser (:func:`apply_server_update`), then broadcasts the new shared
   weights. A round where no site is usable updates nothing at the server.

Nothing here uses ``tf.distribute``: :mod:`fedsim_tf.federation.strategy` calls
:func:`phase_gradients` inside ``strategy.run`` (one replica per site) and
:func:`apply_private_updates` outside it; another engine (Flower) calls the roles directly:

* client (``@app.train()``): set the shared variables from the received arrays, then
  ``report = site_step(site, shared_variables, batch)``; send
  ``[g.numpy() for g in report.shared_gradients]`` and ``bool(report.finite)``; the site's private
  models, codes and optimisers stay in the client process (or its work dir) between rounds;
* server (``@app.main()``): ``validate_update`` each reply (reject wrong shapes with a log line),
  ``result = aggregate(updates, finite_flags)``, ``log_dropped(...)``, and if ``result.count > 0``:
  ``apply_server_update(server_optimizer, shared_variables, result.gradients)``; broadcast.

Contract for the state of a site (:class:`Site`): every private variable belongs to exactly one
:class:`PrivateUpdate` of one site, is never a shared variable, and is changed only by that update's
optimiser (and its ``projection``) on that site's gradients -- and by what the site's own models
write in their forward pass (Keras ``SpectralNormalization`` kernels and vectors in training mode,
BatchNorm moving statistics), which happens inside the loss closure before finiteness is known. A
phase's loss closure must be a pure function of its batch and of variable values (randomness from
stateless ops seeded by the batch), so a run resumed from a checkpoint of the variables and
optimisers repeats an uninterrupted one.

Compiling: wrap a role by closure, ``tf.function(lambda batch: site_step(site, shared, batch))``.
Variables passed as ``tf.function`` arguments are not the variables the models read, so their
gradients would be missing (:func:`phase_gradients` then raises).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import keras
import tensorflow as tf
from absl import logging

Batch = Any
"""A site's batch: any nest of tensors its loss closures understand (one element of its dataset)."""

Gradient = tf.Tensor | tf.IndexedSlices
REDUCTIONS = ("mean", "sum")


def tf_variable(variable: tf.Variable | keras.Variable) -> tf.Variable:
    """The TensorFlow variable behind a Keras 3 variable (or the variable itself)."""
    return variable.value if isinstance(variable, keras.Variable) else variable


def variable_name(variable: tf.Variable | keras.Variable) -> str:
    """A readable name: the Keras path when there is one, else the TensorFlow name."""
    return getattr(variable, "path", None) or variable.name


@dataclass(frozen=True, eq=False)
class PrivateUpdate:
    """Some private variables of a site, updated by one optimiser on the gradient of one loss.

    Attributes:
        loss: name of the loss (a key of the phase's loss dict) whose gradient updates ``variables``.
        variables: the private variables (Keras or ``tf.Variable``; any shapes).
        optimizer: the optimiser of these variables only (one optimiser per update: its step counter
            counts this update's steps). It must not be created inside a ``tf.distribute`` scope.
        projection: optional map applied to every variable after the optimiser step, e.g. the GLO
            projection of codes onto the unit ball: ``[shape of v] -> [shape of v]``.
    """

    loss: str
    variables: Sequence[tf.Variable | keras.Variable]
    optimizer: keras.optimizers.Optimizer
    projection: Callable[[tf.Tensor], tf.Tensor] | None = None


@dataclass(frozen=True, eq=False)
class Phase:
    """One forward/backward pass of a site on its batch.

    Attributes:
        losses: ``batch -> {name: scalar tensor}``, evaluated under a gradient tape after the
            previous phases' private updates; it may read shared and private variables.
        updates: the private updates of this phase (applied, in order, only when the site's round is
            finite so far).
        shared_loss: the loss whose gradient w.r.t. the shared variables the site sends, or ``None``
            for a phase that leaves the shared variables alone (e.g. a discriminator step).
    """

    losses: Callable[[Batch], Mapping[str, tf.Tensor]]
    updates: Sequence[PrivateUpdate] = ()
    shared_loss: str | None = None


@dataclass(frozen=True, eq=False)
class Site:
    """The program of one site in one kind of round: a name and its phases, run in order.

    At most one phase sends a shared gradient (shared weights change only at the server, so one
    gradient per site per round is the paper's rule).

    Raises:
        ValueError: no phase, more than one phase with a ``shared_loss``, or an empty name.
    """

    name: str
    phases: Sequence[Phase]

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a site needs a non-empty name")
        if not self.phases:
            raise ValueError(f"site {self.name!r} has no phase")
        if sum(phase.shared_loss is not None for phase in self.phases) > 1:
            raise ValueError(f"site {self.name!r}: at most one phase may send a shared gradient (shared_loss)")

    @property
    def shared_phase(self) -> int | None:
        """Index of the phase that sends the shared gradient, or ``None``."""
        return next((k for k, phase in enumerate(self.phases) if phase.shared_loss is not None), None)

    def private_variables(self) -> list[tf.Variable | keras.Variable]:
        """Every private variable of the site's updates, in phase and update order."""
        return [v for phase in self.phases for update in phase.updates for v in update.variables]

    def optimizers(self) -> list[keras.optimizers.Optimizer]:
        """The site's private optimisers, without repeats, in phase and update order."""
        return list({id(u.optimizer): u.optimizer for phase in self.phases for u in phase.updates}.values())


class PhaseGradients(NamedTuple):
    """What one phase of a site computes (nothing is applied yet).

    Attributes:
        losses: ``{name: scalar}`` the phase's losses (before its update).
        shared: one gradient per shared variable (its shape, dense), empty when the phase sends none.
        private: per update, one gradient per variable (dense or ``tf.IndexedSlices``, as the tape
            gives it, so that sparse optimiser updates match single-site training).
        finite: scalar bool, every loss and gradient of the phase is finite.
    """

    losses: dict[str, tf.Tensor]
    shared: list[tf.Tensor]
    private: list[list[Gradient]]
    finite: tf.Tensor


class SiteReport(NamedTuple):
    """What a site's step returns: ``shared_gradients`` (and ``finite``) are all that it sends.

    Attributes:
        losses: ``{name: scalar}`` the losses of all its phases (for its own logs; give the phases'
            losses different names, a later phase's loss replaces an earlier one of the same name).
        shared_gradients: one dense gradient per shared variable (its shape); empty when no phase
            sends one.
        finite: scalar bool, every loss and gradient of every phase was finite (else the private
            updates stopped at the first non-finite phase and the server must drop the gradient).
    """

    losses: dict[str, tf.Tensor]
    shared_gradients: list[tf.Tensor]
    finite: tf.Tensor


class Aggregate(NamedTuple):
    """The server's aggregate of one round.

    Attributes:
        gradients: one tensor per shared variable: mean (or sum) of the used sites' gradients; zeros
            when no site is used.
        count: int32 scalar, number of sites in the aggregate.
        used: ``[S]`` bool, site ``s`` is in the aggregate.
    """

    gradients: list[tf.Tensor]
    count: tf.Tensor
    used: tf.Tensor


def _all_finite(tensors: Sequence[tf.Tensor | tf.IndexedSlices]) -> tf.Tensor:
    checks = [tf.reduce_all(tf.math.is_finite(t.values if isinstance(t, tf.IndexedSlices) else t)) for t in tensors]
    return tf.reduce_all(tf.stack(checks)) if checks else tf.constant(True)


def phase_gradients(phase: Phase, shared_variables: Sequence[tf.Variable], batch: Batch) -> PhaseGradients:
    """Run one phase's loss closure and differentiate it; applies no update.

    Safe inside a ``tf.distribute`` replica function (only the closure's forward pass may write model
    state, see the module docstring). One backward pass per distinct loss name.

    Args:
        phase: the phase.
        shared_variables: the shared variables (their order is the order of the shared gradients).
        batch: the site's batch.

    Raises:
        ValueError: the phase names a loss its closure does not return, or a variable gets no
            gradient from its loss (wiring mistakes, found when the step is traced).
    """
    targets: dict[str, list] = {}
    if phase.shared_loss is not None:
        targets.setdefault(phase.shared_loss, []).append(list(shared_variables))
    for update in phase.updates:
        targets.setdefault(update.loss, []).append(list(update.variables))
    with tf.GradientTape(persistent=len(targets) > 1) as tape:
        losses = dict(phase.losses(batch))
    missing = sorted(set(targets) - set(losses))
    if missing:
        raise ValueError(f"phase losses {sorted(losses)} lack {missing} (named by shared_loss or a PrivateUpdate)")
    gradients = {name: tape.gradient(losses[name], groups) for name, groups in targets.items()}
    del tape
    for name, groups in targets.items():
        for variables, grads in zip(groups, gradients[name]):
            none = [variable_name(v) for v, g in zip(variables, grads) if g is None]
            if none:
                raise ValueError(f"loss {name!r} gives no gradient to {none}: pass only variables the loss depends on")
    grouped = {name: iter(grads) for name, grads in gradients.items()}
    shared = [tf.convert_to_tensor(g) for g in next(grouped[phase.shared_loss])] if phase.shared_loss else []
    private = [list(next(grouped[update.loss])) for update in phase.updates]
    finite = _all_finite(list(losses.values()) + shared + [g for grads in private for g in grads])
    return PhaseGradients(losses, shared, private, finite)


def apply_private_updates(phase: Phase, private: Sequence[Sequence[Gradient]], apply: tf.Tensor | bool) -> None:
    """Apply a phase's private gradients with the site's own optimisers, only if ``apply``.

    Must run outside any ``tf.distribute`` replica context: a Keras 3 optimiser called in a replica
    context sums its gradients over all replicas, i.e. mixes the sites' private gradients (see
    :mod:`fedsim_tf.federation.strategy`). When ``apply`` is false nothing changes (not even the
    optimisers' step counters).

    Args:
        phase: the phase whose ``updates`` match ``private``.
        private: :attr:`PhaseGradients.private`.
        apply: scalar bool.
    """
    if not phase.updates:
        return

    def _apply() -> tf.Tensor:
        for update, grads in zip(phase.updates, private):
            update.optimizer.apply_gradients(zip(grads, update.variables))
            if update.projection is not None:
                for variable in update.variables:
                    variable.assign(update.projection(tf.convert_to_tensor(variable)))
        return tf.constant(True)

    tf.cond(tf.convert_to_tensor(apply), _apply, lambda: tf.constant(False))


def site_step(site: Site, shared_variables: Sequence[tf.Variable], batch: Batch) -> SiteReport:
    """One site's step of a round, without ``tf.distribute`` (eagerly or inside a ``tf.function``).

    Runs the phases in order; each phase's private updates are applied when it and every earlier
    phase were finite.

    Args:
        site: the site's program.
        shared_variables: the shared variables, ``[shape_k]`` each.
        batch: the site's batch for this round.

    Returns:
        The report whose ``shared_gradients`` (``[shape_k]`` each) and ``finite`` the site sends.
    """
    losses: dict[str, tf.Tensor] = {}
    shared: list[tf.Tensor] = []
    finite = tf.constant(True)
    for phase in site.phases:
        result = phase_gradients(phase, shared_variables, batch)
        finite = tf.logical_and(finite, result.finite)
        apply_private_updates(phase, result.private, finite)
        losses.update(result.losses)
        shared = result.shared if phase.shared_loss is not None else shared
    return SiteReport(losses, shared, finite)


def validate_update(gradients: Sequence[tf.Tensor], shared_variables: Sequence[tf.Variable], site: str) -> None:
    """Check that a site's update has one gradient of the right shape and dtype per shared variable.

    Raises:
        ValueError: naming the site and the first mismatch.
    """
    if len(gradients) != len(shared_variables):
        raise ValueError(f"site {site!r} sent {len(gradients)} gradients for {len(shared_variables)} shared variables")
    for gradient, variable in zip(gradients, shared_variables):
        shape, dtype = tuple(gradient.shape), tf.as_dtype(gradient.dtype)
        if shape != tuple(variable.shape) or dtype != tf.as_dtype(variable.dtype):
            raise ValueError(f"site {site!r} sent a {dtype.name} {list(shape)} gradient for {variable_name(variable)} "
                             f"({tf.as_dtype(variable.dtype).name} {list(variable.shape)})")


def aggregate(
    site_gradients: Sequence[Sequence[tf.Tensor]],
    finite: Sequence[tf.Tensor | bool],
    reduction: str = "mean",
) -> Aggregate:
    """The server's aggregate over the sites whose update is finite.

    A site is used when it reports ``finite`` and every received tensor is finite (checked here
    too: the server does not trust the flag alone). Works eagerly and inside a ``tf.function``. The
    in-process engine also averages the shared models' forward-pass state (BatchNorm statistics)
    with it.

    Args:
        site_gradients: ``S`` lists (one per site, in site order) of one tensor per shared variable
            (``[shape_k]``; validate them with :func:`validate_update` first).
        finite: ``S`` scalar bools, each site's :attr:`SiteReport.finite`.
        reduction: ``"mean"`` (the paper's average: sum over used sites / their count) or ``"sum"``.

    Returns:
        The aggregate (zeros and ``count == 0`` when no site is usable).

    Raises:
        ValueError: no site, mismatched lengths, or an unknown reduction.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not site_gradients or len(site_gradients) != len(finite):
        raise ValueError(f"aggregate needs one finite flag per site and at least one site, got "
                         f"{len(site_gradients)} gradient lists and {len(finite)} flags")
    if len({len(g) for g in site_gradients}) != 1:
        raise ValueError(f"sites sent different numbers of gradients: {[len(g) for g in site_gradients]}")
    used = tf.stack([tf.logical_and(tf.convert_to_tensor(ok, tf.bool), _all_finite(g))
                     for ok, g in zip(finite, site_gradients)])
    count = tf.reduce_sum(tf.cast(used, tf.int32))
    totals = [
        tf.add_n([tf.where(used[s], tf.convert_to_tensor(grads[k]), tf.zeros_like(grads[k]))
                  for s, grads in enumerate(site_gradients)])
        for k in range(len(site_gradients[0]))
    ]
    if reduction == "mean":
        totals = [total / tf.cast(tf.maximum(count, 1), total.dtype) for total in totals]
    return Aggregate(totals, count, used)


def apply_server_update(
    optimizer: keras.optimizers.Optimizer, shared_variables: Sequence[tf.Variable], gradients: Sequence[tf.Tensor]
) -> None:
    """The server's step: one update of the shared variables with its optimiser.

    Call it only when the aggregate used at least one site (``count > 0``): an optimiser with
    momentum would otherwise move the weights on a zero gradient.

    Args:
        optimizer: the server's optimiser (built on ``shared_variables``).
        shared_variables: the shared variables.
        gradients: :attr:`Aggregate.gradients`, ``[shape_k]`` each.
    """
    optimizer.apply_gradients(zip(gradients, shared_variables))


def log_dropped(round_index: int, names: Sequence[str], ok: Sequence[bool]) -> list[str]:
    """Log the sites whose step a round left out (one warning line); returns their names.

    Args:
        round_index: the round's number.
        names: the site names.
        ok: per site, its update was usable (:attr:`Aggregate.used`, or the site's finite flag).
    """
    dropped = [name for name, good in zip(names, ok) if not good]
    if dropped:
        logging.warning("federated round %d: site(s) %s left out (non-finite loss or gradient); %d of %d site(s) used",
                        round_index, ", ".join(dropped), len(names) - len(dropped), len(names))
    return dropped
