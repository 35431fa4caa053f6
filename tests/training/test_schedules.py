"""The phased poly learning-rate decay against hand-computed rates."""

import keras
import numpy as np
import pytest

from fedsim_tf.training.schedules import PhasedPolyDecay


def test_single_phase_matches_the_nnunet_formula() -> None:
    schedule = PhasedPolyDecay(0.01, (100,))
    for step, expected in [(0, 0.01), (50, 0.01 * 0.5 ** 0.9), (99, 0.01 * 0.01 ** 0.9), (100, 0.0), (150, 0.0)]:
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-12), step


def test_each_phase_restarts_at_the_full_rate() -> None:
    schedule = PhasedPolyDecay(2e-3, (60, 0, 40))  # the empty middle phase is skipped
    rates = np.array([float(schedule(step)) for step in range(100)])
    assert rates[0] == pytest.approx(2e-3) and rates[60] == pytest.approx(2e-3)
    assert rates[30] == pytest.approx(2e-3 * 0.5 ** 0.9, rel=1e-5)
    assert rates[80] == pytest.approx(2e-3 * 0.5 ** 0.9, rel=1e-5)
    assert np.all(np.diff(rates[:60]) < 0) and np.all(np.diff(rates[60:]) < 0)


def test_power_zero_is_constant_and_config_round_trips() -> None:
    constant = PhasedPolyDecay(1e-3, (10, 10), power=0.0)
    assert [float(constant(s)) for s in (0, 9, 10, 19)] == pytest.approx([1e-3] * 4)
    schedule = PhasedPolyDecay(3e-3, (5, 7))
    again = PhasedPolyDecay.from_config(schedule.get_config())
    by_hand = [3e-3 * (1 - s / 5) ** 0.9 for s in range(5)] + [3e-3 * (1 - s / 7) ** 0.9 for s in range(7)]
    assert [float(again(s)) for s in range(12)] == pytest.approx(by_hand, rel=1e-5)
    optimizer = keras.optimizers.Adam(learning_rate=schedule)  # accepted by Keras as a schedule
    assert float(optimizer.learning_rate) == pytest.approx(3e-3)


@pytest.mark.parametrize("phases, power, message", [
    ((), 0.9, "phases must be non-negative step counts with a positive total"),
    ((0, 0), 0.9, "phases must be non-negative step counts with a positive total"),
    ((-1, 5), 0.9, "phases must be non-negative step counts with a positive total"),
    ((5,), -1.0, "power must be non-negative"),
])
def test_bad_arguments_are_rejected(phases: tuple[int, ...], power: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PhasedPolyDecay(1e-3, phases, power)
