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


@toy.command("run")
@click.option(
    "--preset",
    type=click.Choice(["quick", "paper"]),
    default="quick",
    show_default=True,
    help="quick: 4 datasets, small students (about a minute); paper: larger students, more samples, a control dataset.",
)
@click.option(
    "--out", "out_dir", default="runs/toy", show_default=True, type=click.Path(file_okay=False), help="Output folder."
)
@click.option("--seed", default=0, show_default=True, help="Seed of every random draw; same seed, same numbers.")
@click.option("--workers", default=2, show_default=True, help="Datasets run in this many processes (one per core).")
@click.option("--threads", default=1, show_default=True, help="torch CPU threads per process (the tensors are small).")
@click.option("--no-plots", is_flag=True, help="Skip the figures (re-draw later with `cf-ref toy plots`).")
def run(preset: str, out_dir: str, seed: int, workers: int, threads: int, no_plots: bool) -> None:
    """The injectivity experiment end to end: ODE pairs from both exact teachers, few-step causal students
    trained by ODE regression, and their errors and samples.

    \b
    Writes into OUT: metrics.json (schema in docs/toy.md), summary.md (tables), plot_data.safetensors,
    timings.json and the figures (PNG + PDF).
    """
    import torch

    from toy.experiment import Preset, preset_config, run_to_directory

    torch.set_num_threads(threads)
    config = preset_config(Preset(preset))
    metrics, timings = run_to_directory(config, out_dir, seed=seed, workers=workers, figures=not no_plots)
    held = sum(c["holds"] for c in metrics["claims"])
    click.echo(f"{held}/{len(metrics['claims'])} claims hold; wrote {out_dir}/summary.md ({timings['total_s']:.1f} s)")


@toy.command("plots")
@click.option(
    "--from",
    "run_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="A `cf-ref toy run` output folder.",
)
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Where to write the figures (default: the run folder).",
)
@click.option("--dpi", default=130, show_default=True, help="Resolution of the PNG figures.")
def plots(run_dir: str, out_dir: str | None, dpi: int) -> None:
    """Re-draw the figures of a finished run from its saved results, without recomputing anything."""
    from toy.plots import draw_all

    paths = draw_all(run_dir, out_dir, dpi)
    click.echo(f"wrote {len(paths)} files to {paths[0].parent if paths else out_dir}")
