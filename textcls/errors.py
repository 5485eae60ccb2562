"""Errors a user can fix. The CLI prints them as one paragraph and exits with code 2."""

import contextlib
from typing import Iterator


class TextclsError(Exception):
    """Base class: a problem with the user's input, not a bug in textcls."""


class ConfigError(TextclsError):
    """A config file or `--set` override is invalid."""


class DataError(TextclsError):
    """A data file is missing, unreadable or malformed."""


class CheckpointError(TextclsError):
    """A run directory or checkpoint is missing, incompatible or corrupted."""


class DivergedError(TextclsError):
    """Training produced a non-finite loss or weights (a learning rate too high, most often)."""


@contextlib.contextmanager
def data_error_hint(hint: str) -> Iterator[None]:
    """Re-raise a DataError from the body with `hint` appended, e.g. the command's options that change how
    a file is read (the reader's own message names the run's config keys)."""
    try:
        yield
    except DataError as exc:
        raise DataError(f"{exc} ({hint})") from None
