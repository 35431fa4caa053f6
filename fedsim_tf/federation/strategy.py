"""In-process federation on ``tf.distribute.MirroredStrategy``: one replica per site (paper Fig. 2).

Protocol of a round (:class:`FederatedRound`), in two compiled functions:

1. *local*: each replica ``i`` takes site ``i``'s next batch from its own input pipeline
   (:meth:`FederatedEngine.site_inputs`, ``InputReplicationMode.PER_REPLICA``: replica ``i`` reads only
   site ``i``'s dataset) and runs site ``i``'s phases (:func:`roles.phase_gradients` inside
   ``strategy.run``); then, outside the replica context and on site ``i``'s device, site ``i``'s own
   optimisers apply its private gradients (:func:`roles.apply_private_updates`); the server
   aggregates the shared gradients of the finite sites (:func:`roles.aggregate`, an explicit sum of
   the per-site tensors, no all-reduce).
2. *server* (only when at least one site is usable): the server optimiser applies the aggregate to
   the mirrored shared variables, so the new weights are on every site's device.

Shared and private state:

* shared variables (and the server optimiser) are created inside ``engine.strategy.scope()``:
  ``MirroredVariable``s, one copy per site device, always equal;
* private state (a site's GAN, codes, their optimisers) is one set of plain variables per site,
  created *outside* the strategy scope under ``engine.site_device(i)``; the replica function of site
  ``i`` selects site ``i``'s objects by its (static) replica id. A Keras 3 optimiser called inside a
  replica context (TF 2.21) first all-reduces (SUM) the gradients it is given over all replicas
  (``TFOptimizer._all_reduce_sum_gradients``): on an ``ON_READ`` variable every site's copy then
  receives the sum of all sites' gradients (checked: site gradients 1, 10, 100 -> every copy moves
  by 111), and per-site optimisers on per-site variables fail with a bare ``AssertionError`` in
  ``MirroredExtended._update``. Private gradients therefore leave the replica function and are
  applied by the site's optimisers in the default (non-distributed) context, on the site's device.
* Keras 3 optimisers on mirrored variables must step inside a replica context (their merge call
  fails in the cross-replica context), where they all-reduce: the server step gives the aggregate
  to replica 0 and exact zeros to the others, so the SUM all-reduce delivers the aggregate
  bit-exactly (``x + 0 = x``) and every copy applies the same update. That all-reduce, over
  one tensor per shared variable, is the only cross-replica reduction of a round.

* Forward-pass state of the shared models (BatchNorm moving statistics, e.g. the 3D U-Net's in
  Direct-FL) is mirrored too, but each replica writes its own copy; pass it as ``shared_state``: after
  each round every copy is set to the mean over the sites whose step was finite (an explicit mean,
  like the gradients'). Without it the copies drift apart and a failed site leaves NaN in its copy.

Checkpoint/resume: the engine keeps no state of its own. A caller checkpoints the shared variables
(and ``shared_state``), the server optimiser and every site's private variables and optimisers,
each optimiser built before the restore (unbuilt site optimisers are a start-up error here: their
slots would not be restored), and rebuilds the inputs with ``site_inputs(dataset_fn, start_round)``;
a resumed run then repeats an uninterrupted one (same thread count, loss closures without stateful
randomness).

``tf.numpy_function`` in a loss closure (e.g. :func:`fedsim_tf.shape.shape_op.render_shapes`) works
inside the replica function (the op runs on the host CPU); it holds the Python GIL, so the sites'
NumPy parts run one after another while their TensorFlow parts overlap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import keras
import tensorflow as tf

from fedsim_tf.federation import roles


def _untuned_options() -> tf.data.Options:
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


_UNTUNED = _untuned_options()
"""Dataset options of the sites' inputs (see :meth:`FederatedEngine.site_inputs`)."""


def site_strategy(
    devices: Sequence[str], cross_device_ops: tf.distribute.CrossDeviceOps | None = None
) -> tf.distribute.MirroredStrategy:
    """A ``MirroredStrategy`` with one replica per site device.

    Args:
        devices: one device per site (:func:`fedsim_tf.federation.devices.configure_site_devices`).
        cross_device_ops: the reduction of the server step; default ``ReductionToOneDevice`` (works
            for logical CPUs and for logical GPUs on one physical GPU, where NCCL does not).
    """
    return tf.distribute.MirroredStrategy(list(devices), cross_device_ops=cross_device_ops or
                                          tf.distribute.ReductionToOneDevice())


def _same_device(a: str, b: str) -> bool:
    a_spec, b_spec = tf.DeviceSpec.from_string(a), tf.DeviceSpec.from_string(b)
    return (a_spec.device_type, a_spec.device_index) == (b_spec.device_type, b_spec.device_index)


def _is_mirrored(variable: tf.Variable | keras.Variable) -> bool:
    return isinstance(roles.tf_variable(variable), tf.distribute.DistributedValues)


class RoundResult(NamedTuple):
    """The outcome of one round.

    Attributes:
        losses: per site (engine order), ``{name: float}`` the losses of its phases (NaN/inf for a
            site that failed).
        finite: per site, every loss and gradient of its step was finite (its private updates ran).
        used: per site, its gradient was in the aggregate (all ``False`` in a round without a
            shared phase).
        count: number of sites in the aggregate (0: the server did not step).
        dropped: names of the sites whose step was not finite (already logged), for TensorBoard.
    """

    losses: list[dict[str, float]]
    finite: list[bool]
    used: list[bool]
    count: int
    dropped: list[str]


class FederatedEngine:
    """Shared variables, server optimiser and site devices of an in-process federation.

    Args:
        strategy: a ``MirroredStrategy`` with one replica per site (:func:`site_strategy`).
        shared_variables: the shared (mirrored) variables, created in ``strategy.scope()``; their
            order is the order of every gradient list.
        server_optimizer: the server's optimiser, created in ``strategy.scope()``; built here (in
            the scope) if it is not yet.
        reduction: ``"mean"`` (default, the paper) or ``"sum"`` of the sites' gradients.
        shared_state: non-trainable variables of the shared models that their forward pass writes
            (BatchNorm moving statistics), created in ``strategy.scope()``. Inside a replica each
            site writes its own copy of such a mirrored variable (the copies would drift apart and a
            failed site would leave NaN in its copy); after every round each is set, on every copy,
            to the mean of the copies of the sites whose step was finite (unchanged when none was).

    Raises:
        ValueError: not a ``MirroredStrategy``, no shared variable, a shared variable, state variable
            or the server optimiser made outside the strategy scope, or an unknown reduction.
    """

    def __init__(
        self,
        strategy: tf.distribute.MirroredStrategy,
        shared_variables: Sequence[tf.Variable | keras.Variable],
        server_optimizer: keras.optimizers.Optimizer,
        reduction: str = "mean",
        shared_state: Sequence[tf.Variable | keras.Variable] = (),
    ) -> None:
        if type(strategy) is not tf.distribute.MirroredStrategy:
            raise ValueError(f"the federation runs on tf.distribute.MirroredStrategy, got {type(strategy).__name__} "
                             "(MultiWorkerMirroredStrategy and ParameterServerStrategy do not work with Keras 3)")
        if reduction not in roles.REDUCTIONS:
            raise ValueError(f"reduction must be one of {roles.REDUCTIONS}, got {reduction!r}")
        if not shared_variables:
            raise ValueError("the federation needs at least one shared variable")
        self.strategy = strategy
        self.devices = tuple(strategy.extended.worker_devices)
        self.shared_variables = list(shared_variables)
        self.server_optimizer = server_optimizer
        self.reduction = reduction
        self.shared_state = list(shared_state)
        outside = [roles.variable_name(v) for v in self.shared_variables + self.shared_state
                   if not strategy.extended.variable_created_in_scope(roles.tf_variable(v))]
        if outside:
            raise ValueError(f"shared variables {outside} were not created in strategy.scope(): build the shared "
                             "models inside `with engine.strategy.scope():`")
        if not strategy.extended.variable_created_in_scope(roles.tf_variable(server_optimizer.iterations)):
            raise ValueError(f"server optimiser {server_optimizer.name!r} was created outside strategy.scope(): "
                             "create it inside `with engine.strategy.scope():`")
        if not server_optimizer.built:
            with strategy.scope():
                server_optimizer.build(self.shared_variables)
        self._server_step = tf.function(self._server_replicas)

    @property
    def num_sites(self) -> int:
        """Number of replicas, one per site."""
        return len(self.devices)

    def site_device(self, site: int) -> contextlib.AbstractContextManager:
        """``with engine.site_device(i):`` create site ``i``'s private models, codes and optimisers here."""
        return tf.device(self.devices[site])

    def site_inputs(self, dataset_fn: Callable[[int, int], tf.data.Dataset], start_round: int = 0) -> Iterator:
        """A distributed iterator where replica ``i`` reads only site ``i``'s dataset.

        Args:
            dataset_fn: ``(site index, start_round) -> dataset`` whose ``j``-th element is the site's
                batch of round ``start_round + j`` (a deterministic function of site and round, so
                that a resumed run sees the batches an uninterrupted one would). Every site must
                yield one element per round, with the same ``element_spec`` at every site (an unknown
                batch dimension lets batch sizes differ). Called twice per site (once here to check it).
            start_round: the first round these inputs serve (the checkpointed round count).

        Raises:
            ValueError: a site whose dataset is empty, or whose element spec differs from site 0's.
        """
        specs = []
        for site in range(self.num_sites):
            dataset = dataset_fn(site, start_round)
            cardinality = int(dataset.cardinality())
            if cardinality == 0 or (cardinality == tf.data.UNKNOWN_CARDINALITY and
                                    next(iter(dataset.take(1)), None) is None):
                raise ValueError(f"site {site}'s dataset is empty from round {start_round}: every site needs data")
            specs.append(dataset.element_spec)
            if specs[site] != specs[0]:
                raise ValueError(f"site {site}'s batches {specs[site]} differ from site 0's {specs[0]}: sites need the "
                                 "same structure, dtypes and static shapes (leave the batch dimension unknown, e.g. "
                                 "batch() without drop_remainder, for batch sizes that differ)")

        def replica_dataset(context: tf.distribute.InputContext) -> tf.data.Dataset:
            if context.num_input_pipelines != self.num_sites:
                raise ValueError(f"{context.num_input_pipelines} input pipelines for {self.num_sites} sites")
            return dataset_fn(context.input_pipeline_id, start_round).with_options(_UNTUNED)

        # No fetch to device and no tf.data autotuning: with either, an iterator's destructor waits for a
        # background thread (the autotuner sleeps up to a minute between its passes), which cost 1-2 minutes
        # per training phase on the demo preset. A site's batches are small (indices, or one volume) and
        # the ops that consume them run on the site's device anyway.
        per_replica = tf.distribute.InputReplicationMode.PER_REPLICA
        options = tf.distribute.InputOptions(experimental_replication_mode=per_replica,
                                             experimental_fetch_to_device=False)
        return iter(self.strategy.distribute_datasets_from_function(replica_dataset, options))

    def compile_round(self, sites: Sequence[roles.Site]) -> FederatedRound:
        """A round function for these site programs (site ``i`` runs on replica ``i``)."""
        return FederatedRound(self, sites)

    def server_step(self, gradients: Sequence[tf.Tensor]) -> None:
        """The server's update with an aggregate (:attr:`roles.Aggregate.gradients`, ``[shape_k]`` each)."""
        self._server_step(list(gradients))

    def _server_replicas(self, gradients: list[tf.Tensor]) -> None:
        def replica(aggregate: list[tf.Tensor]) -> None:
            first = _replica_index() == 0
            grads = [tf.identity(g) if first else tf.zeros_like(g) for g in aggregate]  # placed on this replica
            roles.apply_server_update(self.server_optimizer, self.shared_variables, grads)

        self.strategy.run(replica, args=(gradients,))


def _replica_index() -> int:
    replica_id = tf.get_static_value(tf.distribute.get_replica_context().replica_id_in_sync_group)
    if replica_id is None:
        raise RuntimeError("the replica id is not static: run rounds through FederatedRound (MirroredStrategy)")
    return int(replica_id)


def _structure(site: roles.Site) -> list:
    return [(phase.shared_loss is not None, [len(update.variables) for update in phase.updates])
            for phase in site.phases]


class FederatedRound:
    """One compiled round over the engine's sites (see the module docstring for the protocol).

    Args:
        engine: the engine (strategy, shared variables, server optimiser).
        sites: one program per replica, in replica order; all with the same structure (number of
            phases, which phase sends the shared gradient, number of updates and of variables per
            update), each with its own private variables and optimisers.

    Raises:
        ValueError: wrong number of sites, different structures, duplicate names, private state
            that is mirrored, on another site's device, shared, or owned by two sites, or a site
            optimiser that is not built.
    """

    def __init__(self, engine: FederatedEngine, sites: Sequence[roles.Site]) -> None:
        self.engine = engine
        self.sites = list(sites)
        self._check_sites()
        self._local = tf.function(self._local_step)

    def _check_sites(self) -> None:
        engine, sites = self.engine, self.sites
        if len(sites) != engine.num_sites:
            raise ValueError(f"{len(sites)} site(s) for {engine.num_sites} replica(s): configure one device per site "
                             f"(configure_site_devices({len(sites)})) and build the strategy over them")
        names = [site.name for site in sites]
        if len(set(names)) != len(names):
            raise ValueError(f"site names must differ, got {names}")
        if any(_structure(site) != _structure(sites[0]) for site in sites):
            raise ValueError(f"sites must run the same phases (number of phases, shared phase, updates and variables "
                             f"per update); got {[_structure(site) for site in sites]}")
        shared = {id(roles.tf_variable(v)) for v in engine.shared_variables}
        owner: dict[int, str] = {}
        for index, site in enumerate(sites):
            states = [(roles.variable_name(v), roles.tf_variable(v), True) for v in site.private_variables()]
            states += [(roles.variable_name(v), roles.tf_variable(v), False)
                       for optimizer in site.optimizers() for v in optimizer.variables]
            for name, variable, placed in states:
                where = f"site {site.name!r}: private variable {name}"
                if id(variable) in shared:
                    raise ValueError(f"{where} is a shared variable")
                if _is_mirrored(variable):
                    raise ValueError(f"{where} is mirrored: create site state (models, codes, optimisers) outside "
                                     f"strategy.scope(), under engine.site_device({index})")
                if owner.setdefault(id(variable), site.name) != site.name:
                    raise ValueError(f"{where} also belongs to site {owner[id(variable)]!r}")
                if placed and not _same_device(variable.device, engine.devices[index]):
                    raise ValueError(f"{where} is on {variable.device}, not on the site's device "
                                     f"{engine.devices[index]}: create it under engine.site_device({index})")
            unbuilt = [optimizer.name for optimizer in site.optimizers() if not optimizer.built]
            if unbuilt:
                raise ValueError(f"site {site.name!r}: optimiser(s) {unbuilt} not built: build them "
                                 f"(optimizer.build(variables)) under engine.site_device({index}) before restoring a "
                                 "checkpoint and before the first round")

    def _phase_replica(self, phase_index: int, batch: roles.Batch) -> roles.PhaseGradients:
        site = self.sites[_replica_index()]
        return roles.phase_gradients(site.phases[phase_index], self.engine.shared_variables, batch)

    def _local_step(self, iterator: Iterator) -> tuple[list[tf.Tensor], tf.Tensor, tf.Tensor, tf.Tensor, list]:
        engine, strategy = self.engine, self.engine.strategy
        batch = next(iterator)
        state_before = [tf.identity(strategy.experimental_local_results(roles.tf_variable(v))[0])
                        for v in engine.shared_state]
        finite = [tf.constant(True)] * engine.num_sites
        losses: list[dict[str, tf.Tensor]] = [{} for _ in self.sites]
        shared: list[list[tf.Tensor]] = [[] for _ in self.sites]
        for phase_index in range(len(self.sites[0].phases)):
            per_replica = strategy.run(self._phase_replica, args=(phase_index, batch))
            for index, site in enumerate(self.sites):
                local = tf.nest.map_structure(lambda value, i=index: strategy.experimental_local_results(value)[i],
                                              per_replica)
                finite[index] = tf.logical_and(finite[index], local.finite)
                with engine.site_device(index):
                    roles.apply_private_updates(site.phases[phase_index], local.private, finite[index])
                losses[index].update(local.losses)
                if site.phases[phase_index].shared_loss is not None:
                    shared[index] = local.shared
        self._average_shared_state(state_before, finite)
        if self.sites[0].shared_phase is None:
            return [], tf.constant(0), tf.zeros([engine.num_sites], tf.bool), tf.stack(finite), losses
        for site, gradients in zip(self.sites, shared):
            roles.validate_update(gradients, engine.shared_variables, site.name)
        result = roles.aggregate(shared, finite, engine.reduction)
        return result.gradients, result.count, result.used, tf.stack(finite), losses

    def _average_shared_state(self, before: list[tf.Tensor], finite: list[tf.Tensor]) -> None:
        """Set every copy of each shared state variable to the mean over the finite sites' copies."""
        engine = self.engine
        if not engine.shared_state:
            return
        copies = [[tf.convert_to_tensor(c) for c in engine.strategy.experimental_local_results(roles.tf_variable(v))]
                  for v in engine.shared_state]
        mean = roles.aggregate([list(site) for site in zip(*copies)], finite, "mean")
        with engine.strategy.scope():
            for variable, value, old in zip(engine.shared_state, mean.gradients, before):
                variable.assign(tf.where(mean.count > 0, value, old))

    def tracing_counts(self) -> tuple[int, int]:
        """How often the local and the server functions were traced (1 and 1 after any number of rounds)."""
        return self._local.experimental_get_tracing_count(), self.engine._server_step.experimental_get_tracing_count()

    def __call__(self, iterator: Iterator, round_index: int = 0) -> RoundResult:
        """Run one round: the sites' local steps, then the server step when a site is usable.

        Args:
            iterator: :meth:`FederatedEngine.site_inputs` (one element per site per round).
            round_index: the round's number, for the log line of dropped sites.

        Raises:
            RuntimeError: called inside a ``tf.distribute`` scope, or a site's input ran out.
        """
        if tf.distribute.has_strategy():
            raise RuntimeError("call a federated round outside strategy.scope(): site optimisers must step in the "
                               "default context")
        try:
            gradients, count, used, finite, losses = self._local(iterator)
        except tf.errors.OutOfRangeError as error:
            raise RuntimeError(f"federated round {round_index}: a site's input ran out; every site's dataset must "
                               "yield one batch per round (repeat it)") from error
        if int(count) > 0:
            self.engine.server_step(gradients)
        finite = [bool(f) for f in finite.numpy()]
        dropped = roles.log_dropped(round_index, [site.name for site in self.sites], finite)
        return RoundResult([{name: float(value) for name, value in site_losses.items()} for site_losses in losses],
                           finite, [bool(u) for u in used.numpy()], int(count), dropped)
