"""Errors that reach users as one line and exit code 2 (bad flags, bad files), not as tracebacks."""


class UserInputError(ValueError):
    """A problem with what the user asked for or supplied (a flag, a file, a folder).

    The message is one line (or one line per problem) naming the flag or file and the problem.
    """
