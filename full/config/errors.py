"""The one error type of the configuration layer."""

from __future__ import annotations

from cf_ref.errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration that cannot run; the message lists every problem found."""
