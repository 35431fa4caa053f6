"""TensorBoard and console record of federated rounds (:class:`fedsim_tf.federation.strategy.RoundResult`):
every site's losses side by side (tags ``<site>/<loss>``), how many sites each round used, and how many
rounds each site was left out of (non-finite loss or gradient) so far."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from fedsim_tf.federation.strategy import RoundResult
from fedsim_tf.training.summaries import Summaries


class RoundLog:
    """Per-site curves of a federation's rounds.

    Args:
        names: the site names, in engine order.
        summaries: the stage's TensorBoard writer.
        derived: optional ``losses -> extra values`` of one site (e.g. IoU from the IoU loss).

    Attributes:
        left_out: ``[S]`` int64 variable, rounds each site was left out of; checkpoint it with the
            stage so that a resumed run keeps counting.
    """

    def __init__(self, names: Sequence[str], summaries: Summaries,
                 derived: Callable[[dict[str, float]], dict[str, float]] | None = None) -> None:
        self.names = list(names)
        self.summaries = summaries
        self.derived = derived
        self.left_out = tf.Variable(np.zeros(len(self.names), np.int64), trainable=False, name="left_out_rounds")

    def record(self, step: int, result: RoundResult, write: bool) -> dict[str, float]:
        """Count the sites the round left out; write the curves when ``write`` or when a site was left out.

        Args:
            step: rounds completed (the TensorBoard step).
            result: the round's outcome.
            write: a regular logging round.

        Returns:
            The mean of each loss over the sites whose step was finite (for the progress line).
        """
        dropped = np.array([not ok for ok in result.finite], np.int64)
        if dropped.any():
            self.left_out.assign_add(dropped)
        if write or dropped.any():
            counts = self.left_out.numpy()
            for index, (name, losses) in enumerate(zip(self.names, result.losses)):
                values = dict(losses) | (self.derived(losses) if self.derived else {})
                self.summaries.scalars(step, values | {"left_out_rounds": float(counts[index])}, site=name)
            self.summaries.scalars(step, {"sites_used": float(result.count)})
        finite = [losses for losses, ok in zip(result.losses, result.finite) if ok]
        return {key: float(np.mean([losses[key] for losses in finite])) for key in (finite[0] if finite else {})}
