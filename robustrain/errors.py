"""Errors that mean "the user asked for something that cannot work", each one sentence.

The CLI prints these without a traceback and exits non-zero; everything else is a bug
and keeps its traceback.
"""


class RobustrainError(Exception):
    """A user-facing error whose message says what was wrong and what is expected."""


class DataError(RobustrainError, ValueError):
    """A dataset is missing, malformed or inconsistent."""


class ConfigError(RobustrainError, ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""
