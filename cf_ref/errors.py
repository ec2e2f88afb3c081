"""The one error type the command line turns into a single line.

A :class:`UserError` is a problem with what the user gave or with the machine's state — a missing or corrupt
file, an invalid setting, a folder in use — never a bug. Every library error of that kind derives from it
(``ConfigError``, ``DataError``, ``CheckpointError``, …), and the command line's top-level group
(:mod:`cf_ref.cli`) prints its message as ``Error: …`` with exit code 1, without a traceback. Anything else
keeps its traceback: it is a bug to report.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input or an unusable environment; the message says what was expected (one line, or a list)."""


class InvalidValue(UserError, ValueError):
    """A bad argument value: a ``ValueError`` to Python callers, one line on the command line."""
