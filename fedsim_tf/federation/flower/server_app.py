"""The federation's Flower ``ServerApp`` (``app``): the server role of :mod:`fedsim_tf.federation.roles` over
the whole schedule of ``--stage=federated`` (paper Sec. 2.3, Fig. 2).

The server owns ``G_S``, ``G_M`` and its optimiser. Schedule (the in-process stage's,
:mod:`fedsim_tf.training.federated_run`):

1. ``query.describe``: every listed site's numbers of volumes -> the federation's plan (site index, slice of
   the pooled initial codes, batch sizes), kept in ``plan.json`` (a restarted server does not ask again);
2. rounds ``0 .. P-1`` (supervised): broadcast the weights; each site sends one step's gradient; the server
   checks each reply (:func:`collect_updates`: a reply that breaks the protocol, has a wrong shape or a
   non-finite value is rejected with a log line), averages the usable ones and applies one update;
3. ``train.gan``: every site trains its own GAN on ``G_M`` (nothing comes back but "done");
4. the Gaussian of all labelled codes from the sites' code sums (:mod:`~fedsim_tf.federation.flower.
   code_moments`), sent with every semi-supervised round (the sites' first unlabelled codes);
5. rounds ``P .. P+S-1``, supervised and unsupervised alternating;
6. the final latent Gaussian (``latent_gaussian.npz``), ``model.json`` and ``result.json`` (rounds, sites left
   out per round, the privacy budget).

Faults: at a (re)start the server waits up to ``wait-timeout`` seconds for every site to connect; a round
waits ``round-timeout`` seconds for replies; sites that do not answer (disconnected,
crashed) or whose update is rejected are left out of the round, which proceeds when at least
``min-sites`` updates are usable (else it is asked again, up to ``round-tries`` times, then the run stops).
A site that comes back gets the current weights with its next request. The server checkpoints
(``checkpoints/``, every ``--checkpoint_every`` rounds and at the phase ends) and resumes from its latest
checkpoint when started again.

Run config (``flwr run -c``, set by :mod:`fedsim_tf.federation.flower.server_command`): ``flagfile`` (the
federation's flags), ``model-json`` (the generative model's record), ``work-dir``, ``sites`` (names in
order), ``nodes`` (``name=node_id`` of the registered keys), ``min-sites``, ``wait-timeout``,
``round-timeout``, ``round-tries``, ``gan-timeout``, ``dp-clip``, ``dp-noise``, ``dp-delta``, ``stop-after``
(end after that many rounds, for a try-out of resuming; -1: never).
"""

from __future__ import annotations

import json
import logging as std_logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from absl import logging
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from fedsim_tf.federation.flower import protocol

app = ServerApp()


@dataclass(frozen=True)
class ServerOptions:
    """The run config (module docstring), checked."""

    flagfile: str
    model_json: str
    work_dir: str
    sites: tuple[str, ...]
    nodes: dict[str, int]
    min_sites: int
    wait_timeout: float
    round_timeout: float
    round_tries: int
    gan_timeout: float
    dp_clip: float
    dp_noise: float
    dp_delta: float
    stop_after: int

    @classmethod
    def from_run_config(cls, config: Mapping[str, Any]) -> ServerOptions:
        sites = tuple(s for s in str(config["sites"]).split(",") if s)
        nodes = {name: int(node) for name, node in (pair.split("=") for pair in str(config["nodes"]).split(",") if pair)}
        if sorted(nodes) != sorted(sites):
            raise ValueError(f"run config: nodes {sorted(nodes)} do not match sites {sorted(sites)}")
        options = cls(str(config["flagfile"]), str(config["model-json"]), str(config["work-dir"]), sites, nodes,
                      int(config["min-sites"]), float(config["wait-timeout"]), float(config["round-timeout"]),
                      int(config["round-tries"]), float(config["gan-timeout"]), float(config["dp-clip"]),
                      float(config["dp-noise"]), float(config["dp-delta"]), int(config["stop-after"]))
        if not 1 <= options.min_sites <= len(sites):
            raise ValueError(f"run config: min-sites={options.min_sites} must be within 1..{len(sites)}")
        return options


class Usable:
    """The usable updates of one round, in site order: ``names``, ``updates`` (float32 arrays per shared
    variable) and ``finite`` flags (as the sites reported them; :func:`roles.aggregate` checks values too)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.updates: list[list[np.ndarray]] = []
        self.finite: list[bool] = []


def collect_updates(replies: Iterable[Message], node_sites: Mapping[int, str], site_order: Sequence[str],
                    shared_variables: Sequence[Any], latent_dim: int, round_index: int) -> Usable:
    """Check every reply of a round; keep the usable ones in site order; log each one that is not.

    A reply is rejected (one warning line naming the site) when it is an error, comes from an unknown node,
    breaks the protocol (:func:`protocol.check_reply`) or has a wrong number, shape or dtype of arrays
    (:func:`roles.validate_update`). A reply with a non-finite value is kept with ``finite`` false, so that
    :func:`roles.aggregate` leaves it out and :func:`roles.log_dropped` names it.
    """
    import tensorflow as tf

    from fedsim_tf.federation import roles

    shapes = [tuple(v.shape) for v in shared_variables]
    received: dict[str, tuple[list[np.ndarray], bool]] = {}
    for reply in replies:
        site = node_sites.get(reply.metadata.src_node_id)
        if site is None:
            logging.warning("round %d: reply from unknown node %d rejected", round_index, reply.metadata.src_node_id)
            continue
        if reply.has_error():
            logging.warning("round %d: site %s failed (%s); left out", round_index, site, reply.error.reason)
            continue
        try:
            protocol.check_reply(protocol.ROUND, reply.content, shapes, latent_dim)
            update = protocol.record_arrays(reply.content[protocol.UPDATE])
            roles.validate_update([tf.constant(u) for u in update], shared_variables, site)
        except ValueError as error:
            logging.warning("round %d: update of site %s rejected: %s", round_index, site, error)
            continue
        finite = bool(reply.content[protocol.STATUS]["finite"]) and all(np.isfinite(u).all() for u in update)
        if not finite:
            logging.warning("round %d: update of site %s is not finite; rejected", round_index, site)
        received[site] = (update, finite)
    usable = Usable()
    for site in site_order:
        if site in received:
            usable.names.append(site)
            usable.updates.append(received[site][0])
            usable.finite.append(received[site][1])
    return usable


@dataclass(frozen=True)
class FederationPlan:
    """Per site (in order): labelled and unlabelled counts; the batch sizes (the in-process rule)."""

    labelled: dict[str, int]
    unlabelled: dict[str, int]
    labelled_batch: int
    unlabelled_batch: int

    def site_record(self, sites: Sequence[str], site: str) -> dict[str, int]:
        index = list(sites).index(site)
        return {"index": index, "code_offset": sum(self.labelled[s] for s in sites[:index]),
                "code_total": sum(self.labelled.values()), "labelled_batch": self.labelled_batch,
                "unlabelled_batch": self.unlabelled_batch}


class Server:
    """The server's model, optimiser, checkpoint and the messages of one run (module docstring)."""

    def __init__(self, grid: Grid, options: ServerOptions) -> None:
        import tensorflow as tf

        from fedsim_tf.models.generative_model import GenerativeModel
        from fedsim_tf.models.generators import build_generators
        from fedsim_tf.training.checkpoints import StageCheckpoint
        from fedsim_tf.federation.flower.settings import federation_config
        from fedsim_tf.training.federated import make_server_optimizer

        self.grid = grid
        self.options = options
        self.config = federation_config(options.flagfile)
        with open(options.model_json, encoding="utf-8") as handle:
            self.record_text = handle.read()
        record = json.loads(self.record_text)
        self.model = GenerativeModel.from_json(record["model"])
        self.model_text = json.dumps(record["model"])
        self.shape_generator, self.material_generator = build_generators(self.model, self.config.glo.seed)
        self.variables = self.shape_generator.trainable_variables + self.material_generator.trainable_variables
        self.optimizer = make_server_optimizer(self.config.federated)
        self.optimizer.build(self.variables)
        self.gans_done = tf.Variable(False)
        self.left_out = tf.Variable(tf.zeros([len(options.sites)], tf.int64))
        self.checkpoint = StageCheckpoint(os.path.join(options.work_dir, "checkpoints"),
                                          shape_generator=self.shape_generator,
                                          material_generator=self.material_generator,
                                          server_optimizer=self.optimizer, gans_done=self.gans_done,
                                          left_out_rounds=self.left_out)
        self.node_sites = {node: site for site, node in options.nodes.items()}
        self.plan: FederationPlan | None = None

    # --- messages -------------------------------------------------------------------------------------------
    def _nodes(self, wait_all: bool) -> list[tuple[str, int]]:
        """The listed sites that are connected, in site order; waits up to ``wait-timeout`` for all (or for
        ``min-sites``)."""
        needed = len(self.options.sites) if wait_all else self.options.min_sites
        deadline = time.monotonic() + self.options.wait_timeout
        while True:
            alive = set(self.grid.get_node_ids())
            present = [(site, self.options.nodes[site]) for site in self.options.sites
                       if self.options.nodes[site] in alive]
            if len(present) >= needed or time.monotonic() > deadline:
                return present
            time.sleep(1.0)

    def _ask(self, message_type: str, contents: Mapping[str, RecordDict], group: str, timeout: float) -> list[Message]:
        messages = [Message(content, dst_node_id=self.options.nodes[site], message_type=message_type, group_id=group,
                            ttl=timeout) for site, content in contents.items()]  # not delivered once the round is over
        return list(self.grid.send_and_receive(messages, timeout=timeout))

    def _plan_record(self, site: str, **values: Any) -> ConfigRecord:
        assert self.plan is not None
        return ConfigRecord({**self.plan.site_record(self.options.sites, site), "model": self.model_text,
                             "dp_clip": self.options.dp_clip, "dp_noise": self.options.dp_noise, **values})

    def _weights(self) -> ArrayRecord:
        return protocol.arrays_record([np.asarray(v.numpy()) for v in self.variables])

    # --- schedule ---------------------------------------------------------------------------------------------
    def describe(self) -> FederationPlan:
        """Step 1: the federation's plan (from ``plan.json`` when a previous start wrote it)."""
        from fedsim_tf.atomic import write_json_atomic

        path = os.path.join(self.options.work_dir, "plan.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                return FederationPlan(**json.load(handle))
        present = self._nodes(wait_all=True)
        if len(present) < len(self.options.sites):
            raise RuntimeError(f"only {[s for s, _ in present]} of {list(self.options.sites)} connected within "
                               f"{self.options.wait_timeout:.0f} s; every site must describe itself once")
        replies = self._ask(protocol.DESCRIBE, {site: RecordDict() for site, _ in present}, "describe",
                            self.options.wait_timeout)
        labelled, unlabelled = {}, {}
        for reply in replies:
            site = self.node_sites[reply.metadata.src_node_id]
            if reply.has_error():
                raise RuntimeError(f"site {site} could not describe itself: {reply.error.reason}")
            protocol.check_reply(protocol.DESCRIBE, reply.content, [], self.model.latent_dim)
            labelled[site] = int(reply.content[protocol.COUNTS]["labelled"])
            unlabelled[site] = int(reply.content[protocol.COUNTS]["unlabelled"])
        missing = sorted(set(self.options.sites) - set(labelled))
        if missing:
            raise RuntimeError(f"site(s) {missing} did not describe themselves within {self.options.wait_timeout} s")
        glo, settings = self.config.glo, self.config.federated
        plan = FederationPlan(labelled, unlabelled, min(glo.batch_size, *labelled.values()),
                              min(settings.unlabelled_batch, *unlabelled.values()))
        write_json_atomic(path, asdict(plan))
        return plan

    def round(self, round_index: int, gaussian: Any) -> int:
        """One round (module docstring); returns the number of sites in the average."""
        from fedsim_tf.federation import roles

        supervised = self.config.federated.supervised(round_index)
        for attempt in range(1, self.options.round_tries + 1):
            present = self._nodes(wait_all=False)
            contents = {}
            for site, _ in present:
                records = {protocol.WEIGHTS: self._weights(),
                           protocol.PLAN: self._plan_record(site, round=round_index, supervised=supervised)}
                if gaussian is not None:
                    records[protocol.GAUSSIAN] = ArrayRecord({"mean": Array(np.asarray(gaussian.mean)),
                                                              "cov": Array(np.asarray(gaussian.cov))})
                contents[site] = RecordDict(records)
            replies = self._ask(protocol.ROUND, contents, str(round_index), self.options.round_timeout)
            usable = collect_updates(replies, self.node_sites, self.options.sites, self.variables,
                                     self.model.latent_dim, round_index)
            if sum(usable.finite) >= self.options.min_sites:
                break
            logging.warning("round %d (try %d of %d): %d usable update(s), fewer than --min_sites=%d",
                            round_index, attempt, self.options.round_tries, sum(usable.finite), self.options.min_sites)
        else:
            raise RuntimeError(f"round {round_index}: fewer than {self.options.min_sites} usable updates in "
                               f"{self.options.round_tries} tries")
        answered = {self.node_sites.get(reply.metadata.src_node_id) for reply in replies}
        silent = [site for site in self.options.sites if site not in answered]
        if silent:
            logging.warning("round %d: no reply from site(s) %s (not connected, or silent for %.0f s); left out",
                            round_index, ", ".join(silent), self.options.round_timeout)
        result = roles.aggregate(usable.updates, usable.finite)
        used = dict(zip(usable.names, [bool(u) for u in result.used.numpy()]))
        roles.log_dropped(round_index, usable.names, [used[site] for site in usable.names])
        ok = [used.get(site, False) for site in self.options.sites]
        dropped = [site for site, good in zip(self.options.sites, ok) if not good]
        self.left_out.assign_add(np.asarray([not good for good in ok], np.int64))
        roles.apply_server_update(self.optimizer, self.variables, result.gradients)
        logging.info("flower: round %d (%s): %d site(s) %s%s", round_index + 1,
                     "supervised" if supervised else "unsupervised", int(result.count),
                     ", ".join(s for s in self.options.sites if used.get(s)),
                     f"; left out {', '.join(dropped)}" if dropped else "")
        return int(result.count)

    def pretrain_gans(self) -> None:
        """Step 3: every present site trains its GAN (waits up to ``gan-timeout``)."""
        present = self._nodes(wait_all=True)
        contents = {site: RecordDict({protocol.WEIGHTS: self._weights(), protocol.PLAN: self._plan_record(site)})
                    for site, _ in present}
        replies = self._ask(protocol.GAN, contents, "gan", self.options.gan_timeout)
        done = [self.node_sites[r.metadata.src_node_id] for r in replies if not r.has_error()]
        for reply in replies:
            if reply.has_error():
                logging.warning("GAN pre-training of site %s failed: %s", self.node_sites[reply.metadata.src_node_id],
                                reply.error.reason)
        logging.info("flower: GANs pre-trained at %s", ", ".join(done))

    def code_gaussian(self, after_round: int, with_unlabelled: bool) -> Any:
        """Steps 4 and 6: the Ledoit-Wolf Gaussian of the present sites' codes after ``after_round``."""
        from fedsim_tf.federation.flower import code_moments

        present = self._nodes(wait_all=True)
        plan = {"after_round": after_round, "with_unlabelled": with_unlabelled}
        replies = self._ask(protocol.CODE_SUMS, {site: RecordDict({protocol.PLAN: self._plan_record(site, **plan)})
                                                 for site, _ in present}, f"codes-{after_round}",
                            self.options.round_timeout)
        sums = {}
        for reply in replies:
            if not reply.has_error():
                protocol.check_reply(protocol.CODE_SUMS, reply.content, [], self.model.latent_dim)
                sums[self.node_sites[reply.metadata.src_node_id]] = (
                    int(reply.content[protocol.COUNTS]["codes"]), reply.content[protocol.SUMS]["sum"].numpy())
        sites = [site for site in self.options.sites if site in sums]
        mean = code_moments.pooled_mean([sums[s][0] for s in sites], [sums[s][1] for s in sites])
        contents = {site: RecordDict({protocol.PLAN: self._plan_record(site, **plan),
                                      protocol.MEAN: ArrayRecord({"mean": Array(mean)})}) for site in sites}
        replies = self._ask(protocol.CODE_SCATTER, contents, f"scatter-{after_round}", self.options.round_timeout)
        scatters = {}
        for reply in replies:
            if not reply.has_error():
                protocol.check_reply(protocol.CODE_SCATTER, reply.content, [], self.model.latent_dim)
                scatters[self.node_sites[reply.metadata.src_node_id]] = (
                    reply.content[protocol.SUMS]["scatter"].numpy(), float(reply.content[protocol.STATUS]["fourth"]))
        if sorted(scatters) != sorted(sites):
            raise RuntimeError(f"code scatter: replies from {sorted(scatters)}, expected {sites}")
        return code_moments.pooled_gaussian([sums[s][0] for s in sites], mean, [scatters[s][0] for s in sites],
                                            [scatters[s][1] for s in sites])

    def run(self) -> dict[str, Any]:
        """The schedule (module docstring), resuming from the latest checkpoint."""
        from fedsim_tf.atomic import write_json_atomic, write_text_atomic
        from fedsim_tf.federation.flower.privacy import epsilon
        from fedsim_tf.training.latent_gaussian import LatentGaussian

        settings = self.config.federated
        pretrain, total = settings.pretrain_rounds, settings.total_rounds
        start = self.checkpoint.restore_latest()
        self.plan = self.describe()
        present = [site for site, _ in self._nodes(wait_all=True)]  # a (re)start gives every site time to connect
        logging.info("flower: connected sites %s", ", ".join(present))
        logging.info("flower: sites %s, plan %s; round %d/%d (%d pre-training, %d semi-supervised)",
                     ", ".join(self.options.sites), self.plan, start, total, pretrain, settings.semi_rounds)
        stop = total if self.options.stop_after < 0 else min(total, self.options.stop_after)

        def rounds(first: int, last: int, gaussian: Any) -> bool:
            for round_index in range(first, min(last, stop)):
                self.round(round_index, gaussian)
                done = round_index + 1
                if done % settings.checkpoint_every == 0 or done in (pretrain, total, stop):
                    self.checkpoint.save(done)
            return last <= stop

        if not rounds(start, pretrain, None):
            return {"stopped_after": stop}
        gaussian_path = os.path.join(self.options.work_dir, "start_gaussian.npz")
        if not bool(self.gans_done.numpy()):
            self.pretrain_gans()
            if settings.semi_rounds:
                self.code_gaussian(pretrain - 1, with_unlabelled=False).save(gaussian_path)
            self.gans_done.assign(True)
            self.checkpoint.save(pretrain)
        gaussian = LatentGaussian.load(gaussian_path) if settings.semi_rounds else None
        if not rounds(max(start, pretrain), total, gaussian):
            return {"stopped_after": stop}
        final = self.code_gaussian(total - 1, with_unlabelled=settings.semi_rounds > 0)
        final.save(os.path.join(self.options.work_dir, "latent_gaussian.npz"))
        write_text_atomic(os.path.join(self.options.work_dir, "model.json"), self.record_text)
        result: dict[str, Any] = {"rounds": total, "sites": list(self.options.sites),
                                  "left_out_rounds": dict(zip(self.options.sites, self.left_out.numpy().tolist()))}
        if self.options.dp_noise > 0:
            result["privacy"] = {"clip": self.options.dp_clip, "noise_multiplier": self.options.dp_noise,
                                 "delta": self.options.dp_delta, "rounds": total,
                                 "epsilon": epsilon(self.options.dp_noise, total, self.options.dp_delta)}
            logging.info("flower: differential privacy of each site's updates: epsilon %.3f at delta %g "
                         "(%d rounds, noise multiplier %g, clip %g)", result["privacy"]["epsilon"],
                         self.options.dp_delta, total, self.options.dp_noise, self.options.dp_clip)
        write_json_atomic(os.path.join(self.options.work_dir, "result.json"), result)
        return result


@app.main()
def main(grid: Grid, context: Context) -> None:
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    options = ServerOptions.from_run_config(context.run_config)
    os.makedirs(os.path.join(options.work_dir, "logs"), exist_ok=True)
    handler = std_logging.FileHandler(os.path.join(options.work_dir, "logs", "server_app.log"))
    handler.setFormatter(std_logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.get_absl_logger().addHandler(handler)
    try:
        server = Server(grid, options)
        logging.set_verbosity(logging.INFO)  # after the settings' flags were parsed (they reset the verbosity)
        result = server.run()
    except Exception:
        logging.exception("flower: the server stopped")
        raise
    logging.info("flower: done %s", result)
