"""``cf-ref toy …``: the toy track (sequences with exact teachers)."""

from __future__ import annotations

import click


@click.group()
def toy() -> None:
    """The toy track: Gaussian / Gaussian-mixture sequences with exact bidirectional and AR teachers."""


@toy.command("injectivity")
@click.option("--frames", default=4, show_default=True, help="Frames per sequence.")
@click.option("--dim", default=1, show_default=True, help="Dimensions per frame.")
@click.option("--samples", default=256, show_default=True, help="Outer Monte Carlo samples.")
@click.option("--resamples", default=64, show_default=True, help="Resamples of the unseen noise per sample.")
@click.option("--seed", default=0, show_default=True)
def injectivity(frames: int, dim: int, samples: int, resamples: int, seed: int) -> None:
    """Print the per-frame non-injectivity index of bidirectional and causal ODE pairs on the presets.

    Bidirectional pairs: the student for frame i sees the noise of frames <= i. Causal pairs: it sees
    frame i's noise and the clean (teacher-forcing) context. 0 = injective; larger = more of frame i's
    variance is decided by noise the student cannot see.
    """
    from toy.injectivity_report import injectivity_table

    click.echo(injectivity_table(frames, dim, samples, resamples, seed))
