"""A console progress line with step rate and ETA, logged at most every few seconds."""

from __future__ import annotations

import time

from absl import logging


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    """Reports ``<name> step k/N | x.xx steps/s | ETA mm:ss | key=value ...``.

    Args:
        name: what is progressing (e.g. the stage name).
        total: total number of steps.
        start: steps already done (when resuming), excluded from the rate.
        every_s: minimum seconds between two lines (the last step is always reported).
    """

    def __init__(self, name: str, total: int, start: int = 0, every_s: float = 5.0) -> None:
        self.name = name
        self.total = total
        self.start = start
        self.every_s = every_s
        self._t0 = time.monotonic()
        self._last = float("-inf")

    def rate(self, step: int) -> float:
        """Steps per second since construction."""
        elapsed = time.monotonic() - self._t0
        return (step - self.start) / elapsed if elapsed > 0 else 0.0

    def update(self, step: int, **values: float) -> None:
        """Log the line for ``step`` (steps completed) if enough time has passed or it is the last."""
        now = time.monotonic()
        if step < self.total and now - self._last < self.every_s:
            return
        self._last = now
        rate = self.rate(step)
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        eta_text = format_seconds(eta) if eta == eta else "--:--"
        extra = " ".join(f"{key}={value:.4g}" for key, value in values.items())
        logging.info("%s step %d/%d | %.2f steps/s | ETA %s | %s", self.name, step, self.total, rate, eta_text, extra)
