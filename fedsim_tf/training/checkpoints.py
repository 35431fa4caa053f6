"""Stage checkpoints: resume from the latest one, never leave a half-written one behind.

``tf.train.CheckpointManager`` writes the checkpoint data under a temporary name and only then
updates the ``checkpoint`` index file, itself written atomically; a crash during a save leaves the
previous checkpoint as the latest valid one, so a rerun resumes from it.
"""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf

from fedsim_tf.errors import UserInputError


class StageCheckpoint:
    """Checkpointing for one stage under ``<work_dir>/<stage>/checkpoints``.

    Args:
        directory: folder of this stage's checkpoints (created if missing).
        max_to_keep: number of recent checkpoints kept.
        **trackables: the objects to save (models, optimisers, variables); a ``step`` counter
            (int64 ``tf.Variable``) is added and restored with them.
    """

    def __init__(self, directory: str, max_to_keep: int = 3, **trackables: Any) -> None:
        os.makedirs(directory, exist_ok=True)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self._checkpoint = tf.train.Checkpoint(step=self.step, **trackables)
        self._manager = tf.train.CheckpointManager(self._checkpoint, directory, max_to_keep=max_to_keep)

    @property
    def latest(self) -> str | None:
        """Path prefix of the latest complete checkpoint, or None."""
        return self._manager.latest_checkpoint

    def restore_latest(self) -> int:
        """Restore the latest checkpoint if there is one; returns the step to continue from (0 if none).

        Raises:
            UserInputError: naming the checkpoint when it cannot be read (truncated or corrupt files, or
                variables of other shapes).
        """
        latest = self._manager.latest_checkpoint
        if latest:
            try:
                self._checkpoint.restore(latest).expect_partial()
            except Exception as error:  # TensorFlow's reader fails in many ways on bad files (DataLoss, Index, ...)
                first = (str(error).strip().splitlines() or [""])[0]
                raise UserInputError(f"{latest}: unreadable checkpoint ({type(error).__name__}: {first}); delete "
                                     f"{os.path.dirname(latest)} to start that stage over") from error
        return int(self.step.numpy())

    def save(self, step: int) -> str:
        """Save everything at ``step`` (the number of completed steps); returns the checkpoint prefix."""
        self.step.assign(step)
        return self._manager.save(checkpoint_number=step)
