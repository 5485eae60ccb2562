"""Errors a user can fix. The CLI prints them as one paragraph and exits with code 2."""


class TextclsError(Exception):
    """Base class: a problem with the user's input, not a bug in textcls."""


class ConfigError(TextclsError):
    """A config file or `--set` override is invalid."""


class DataError(TextclsError):
    """A data file is missing, unreadable or malformed."""


class CheckpointError(TextclsError):
    """A run directory or checkpoint is missing, incompatible or corrupted."""
