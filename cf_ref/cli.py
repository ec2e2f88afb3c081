"""``cf-ref`` command line: a thin click layer over the library (``cf-ref toy …``, ``cf-ref full …``)."""

from __future__ import annotations

import click

from full.cli import full
from toy.cli import toy


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cf-ref")
def main() -> None:
    """Causal Forcing reference implementation.

    \b
    toy   low-dimensional sequences with exact teachers: the injectivity argument, numerically
    full  the causal Wan2.1 video DiT: conversion, sampling, three-stage training
    """


main.add_command(toy)
main.add_command(full)

if __name__ == "__main__":
    main()
