"""Errors that the CLI reports as one clear line (a traceback only with ``--debug``)."""


class VidinvError(Exception):
    """A user-facing error: bad input, missing weights, unsupported file.

    The message must be one line that says what is wrong and how to fix it.
    """

    exit_code = 2


class MissingWeightsError(VidinvError):
    """A zoo artifact is needed but not present (and could not be fetched)."""

    exit_code = 3


class InputError(VidinvError):
    """A missing, unreadable or unsupported input file."""

    exit_code = 2
