"""``cf-ref toy …``: the toy track (sequences with exact teachers)."""

from __future__ import annotations

import sys

import click

from cf_ref.errors import UserError
from cf_ref.recipes import Recipe
from toy.pipeline_config import RealScore, pipeline_config
from toy.preset import Preset

POSITIVE = click.IntRange(1)
THEOREM_FAILURE_EXIT = 3
"""``cf-ref toy run``'s exit status when a theorem check fails (:mod:`toy.claims`): a bug, not a weak student."""
_threads_option = click.option(
    "--threads", type=POSITIVE, default=1, show_default=True, help="torch CPU threads per process (tensors are small)."
)


def _out_folder(value: str) -> str:
    """``--out``: not empty, and writable (checked before any work)."""
    from cf_ref.io import check_writable_dir

    check_writable_dir(value)
    return value


def _use_threads(threads: int) -> None:
    """The toy networks are far too small for intra-op parallelism; one thread avoids oversubscribing shared cores."""
    import torch

    torch.set_num_threads(threads)


@click.group()
def toy() -> None:
    """The toy track: Gaussian / Gaussian-mixture sequences with exact bidirectional and AR teachers."""


@toy.command("injectivity")
@click.option("--frames", type=POSITIVE, default=4, show_default=True, help="Frames per sequence.")
@click.option("--dim", type=POSITIVE, default=1, show_default=True, help="Dimensions per frame.")
@click.option("--samples", type=POSITIVE, default=256, show_default=True, help="Outer Monte Carlo samples.")
@click.option(
    "--resamples",
    type=click.IntRange(2),
    default=64,
    show_default=True,
    help="Resamples of the unseen noise per sample.",
)
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
    type=click.Choice([p.value for p in Preset]),
    default="quick",
    show_default=True,
    help="quick: 4 datasets, small students (about a minute); paper: larger students, more samples, a control dataset.",
)
@click.option(
    "--out", "out_dir", default="runs/toy", show_default=True, type=click.Path(file_okay=False), help="Output folder."
)
@click.option("--seed", default=0, show_default=True, help="Seed of every random draw; same seed, same numbers.")
@click.option(
    "--workers", type=POSITIVE, default=2, show_default=True, help="Datasets run in this many processes (one per core)."
)
@_threads_option
@click.option("--no-plots", is_flag=True, help="Skip the figures (re-draw later with `cf-ref toy plots`).")
@click.option("--overwrite", is_flag=True, help="Replace the results of an earlier run in OUT.")
def run(preset: str, out_dir: str, seed: int, workers: int, threads: int, no_plots: bool, overwrite: bool) -> None:
    """The injectivity experiment end to end: ODE pairs from both exact teachers, few-step causal students
    trained by ODE regression, and their errors and samples.

    \b
    Writes into OUT: metrics.json (schema in docs/toy.md), summary.md (tables), plot_data.safetensors,
    timings.json and the figures (PNG + PDF). Exits with status 3 when a theorem check fails (a bug);
    missed empirical expectations are listed with their margins.
    """
    from toy.claims import THEOREM, failed_theorems
    from toy.experiment_config import preset_config
    from toy.report import claims_line
    from toy.run_files import earlier_results
    from toy.runner import run_to_directory

    earlier = earlier_results(_out_folder(out_dir))
    if earlier and not overwrite:
        raise UserError(
            f"{out_dir} holds an earlier run ({', '.join(p.name for p in earlier)}); pass --overwrite to replace it, "
            "or choose another --out"
        )
    _use_threads(threads)
    config = preset_config(Preset(preset))
    metrics, timings = run_to_directory(config, out_dir, seed=seed, workers=workers, figures=not no_plots)
    click.echo(f"{claims_line(metrics)}; wrote {out_dir}/summary.md ({timings['total_s']:.1f} s)")
    for c in metrics["claims"]:
        if not c["holds"]:
            kind = "THEOREM CHECK FAILED (a bug)" if c["kind"] == THEOREM else "expectation missed"
            click.echo(f"  {kind}: {c['dataset']}, {c['subject']}: {c['claim']} — {c['value']:.4g} "
                       f"{c['relation']} {c['threshold']:.4g} fails by {-c['margin']:.3g}")  # fmt: skip
    if failed_theorems(metrics["claims"]):
        sys.exit(THEOREM_FAILURE_EXIT)


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


_real_score_option = click.option(
    "--real-score",
    type=click.Choice([r.value for r in RealScore]),
    default=RealScore.LEARNED.value,
    show_default=True,
    help="DMD real score: the learned bidirectional base model, or the exact teacher (a check of DMD itself).",
)


@toy.command("pipeline")
@click.option(
    "--recipe",
    type=click.Choice([r.value for r in Recipe]),
    required=True,
    help="Which recipe's stage chain to run.",
)
@click.option("--preset", type=click.Choice([p.value for p in Preset]), default=Preset.QUICK.value, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="runs/toy-pipeline", show_default=True)
@_real_score_option
@_threads_option
def pipeline(recipe: str, preset: str, seed: int, out: str, real_score: str, threads: int) -> None:
    """Run one recipe's three-stage pipeline with learned networks: base model, AR teacher (if the recipe uses
    one), few-step student initialisation, asymmetric DMD. Writes OUT/pipeline.json and figures."""
    from toy.compare import run_pipeline

    _out_folder(out)
    _use_threads(threads)
    p = Preset(preset)
    result = run_pipeline(pipeline_config(p, RealScore(real_score)), Recipe(recipe), seed, out, p)
    init, final = result["stages"]["init"]["samples"], result["stages"]["dmd"]["samples"]
    click.echo(
        f"{recipe} seed {seed}: energy distance {init['energy_distance']:.4g} after init -> "
        f"{final['energy_distance']:.4g} after DMD; results in {out}"
    )


@toy.command("compare")
@click.option("--seeds", type=POSITIVE, default=3, show_default=True, help="Number of seeds (0, 1, …).")
@click.option("--preset", type=click.Choice([p.value for p in Preset]), default=Preset.QUICK.value, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="runs/toy-compare", show_default=True)
@_real_score_option
@_threads_option
def compare(seeds: int, preset: str, out: str, real_score: str, threads: int) -> None:
    """Run every recipe with equal budgets on several seeds; writes OUT/compare.json, OUT/compare.md
    (mean ± std over seeds) and figures."""
    from pathlib import Path

    from toy.compare import run_compare

    _out_folder(out)
    _use_threads(threads)
    p = Preset(preset)
    run_compare(pipeline_config(p, RealScore(real_score)), list(range(seeds)), Path(out), p)
    click.echo((Path(out) / "compare.md").read_text())
