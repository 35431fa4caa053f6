"""The one exception type of the data layer: a :class:`UserInputError` (a ``ValueError``) that carries
every problem found."""

from __future__ import annotations

from collections.abc import Iterable

from fedsim_tf.errors import UserInputError


class DataError(UserInputError):
    """Bad input data: one or more problems, each a single line that names the offending file.

    Args:
        problems: one message or several; each message is one line (newlines are flattened).

    Attributes:
        problems: the list of one-line messages, in the order they were found.
    """

    def __init__(self, problems: str | Iterable[str]) -> None:
        items = [problems] if isinstance(problems, str) else list(problems)
        if not items:
            raise ValueError("DataError needs at least one problem")
        self.problems: list[str] = [" ".join(str(p).split()) for p in items]
        super().__init__("\n".join(self.problems))
