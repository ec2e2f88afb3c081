"""``cf-ref`` command line: a thin click layer over the library (``cf-ref toy …``, ``cf-ref full …``).

The shared layer imports neither track: each track registers its click group under the ``cf_ref.commands``
entry-point group (``pyproject.toml``), and :func:`main` adds whatever is installed. A track that fails to
import is reported when its command is asked for, not when another one runs.

Errors: the one boundary of every command. A :class:`cf_ref.errors.UserError` (bad input, a corrupt or missing
file, a folder in use) and an ``OSError`` (permissions, a full disk, a read-only folder) become one line
``Error: …`` and exit code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import click

from cf_ref.errors import UserError

COMMANDS_GROUP = "cf_ref.commands"


def one_line(exc: BaseException) -> str:
    """The message a user sees for a :class:`UserError` or ``OSError``."""
    if isinstance(exc, OSError) and not isinstance(exc, UserError) and exc.strerror:
        where = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}:{where}" if where else exc.strerror
    return str(exc) or type(exc).__name__


class TrackGroup(click.Group):
    """The top-level group: subcommands are the installed tracks, loaded on first use."""

    def _entries(self) -> dict:
        return {ep.name: ep for ep in entry_points(group=COMMANDS_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._entries()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        entry = self._entries().get(name)
        return None if entry is None else entry.load()

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (UserError, OSError) as exc:
            raise click.ClickException(one_line(exc)) from None


@click.group(cls=TrackGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cf-ref")
def main() -> None:
    """Causal Forcing reference implementation.

    \b
    toy   low-dimensional sequences with exact teachers: the injectivity argument, numerically
    full  the causal Wan2.1 video DiT: conversion, sampling, three-stage training
    """


if __name__ == "__main__":
    main()
