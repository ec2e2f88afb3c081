"""The one error type of the configuration layer."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration that cannot run; the message lists every problem found."""
