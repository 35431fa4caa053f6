"""Learning-rate schedules of the training stages."""

from __future__ import annotations

import keras
import tensorflow as tf

POLY_POWER = 0.9


class PhasedPolyDecay(keras.optimizers.schedules.LearningRateSchedule):
    """nnU-Net's polynomial decay ``lr * (1 - t / T) ** 0.9``, restarted for each training phase.

    Phases are consecutive step counts (e.g. ``(pre-training steps, fine-tuning steps)``); within a
    phase of ``T`` steps the optimiser step ``t`` counted from the phase start gets
    ``initial_learning_rate * (1 - t / T) ** power``, so each phase starts at the full rate and
    decays towards zero at its end. Steps past the last phase keep the last phase's end value
    (0, or the constant rate when ``power`` is 0). Zero-length phases are skipped.

    Args:
        initial_learning_rate: rate at the start of every phase.
        phases: steps of each phase, in order (non-negative, at least one positive).
        power: exponent of the decay (nnU-Net: 0.9); 0 gives a constant rate.
    """

    def __init__(self, initial_learning_rate: float, phases: tuple[int, ...], power: float = POLY_POWER) -> None:
        if not phases or any(int(p) < 0 for p in phases) or sum(int(p) for p in phases) == 0:
            raise ValueError(f"phases must be non-negative step counts with a positive total, got {phases}")
        if power < 0:
            raise ValueError(f"power must be non-negative, got {power}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.phases = tuple(int(p) for p in phases)
        self.power = float(power)

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        step = tf.cast(step, tf.float32)
        start = 0.0
        rate = tf.constant(self.initial_learning_rate, tf.float32)
        for length in self.phases:  # the phase containing ``step`` decides; later phases override
            if length == 0:
                continue
            progress = tf.clip_by_value((step - start) / float(length), 0.0, 1.0)
            decayed = self.initial_learning_rate * (1.0 - progress) ** self.power
            rate = tf.where(step >= start, decayed, rate)
            start += length
        return rate

    def get_config(self) -> dict[str, object]:
        return {"initial_learning_rate": self.initial_learning_rate, "phases": list(self.phases),
                "power": self.power}
