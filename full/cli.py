"""``cf-ref full …``: the video track (causal Wan2.1 DiT).

Each command parses options and calls the library. Bad input raises a :class:`cf_ref.errors.UserError`, which the
top-level group prints as one line (:mod:`cf_ref.cli`); no command catches errors itself.
"""

from __future__ import annotations

from pathlib import Path

import click

from cf_ref.recipes import Forcing, PairTeacher, Recipe
from full.cli_sampling import out_folder, sample, serve
from full.config import PRESETS
from full.recipes import Stage

POSITIVE = click.IntRange(1)


def _choice(enum_type) -> click.Choice:
    """The values of ``enum_type`` as a click choice (the CLI's choices come from the library's enums)."""
    return click.Choice([member.value for member in enum_type])


@click.group()
def full() -> None:
    """The full track: Wan2.1-T2V-1.3B made causal (teacher forcing, KV cache), sampled and trained in three stages."""


full.add_command(sample)
full.add_command(serve)


@full.command()
@click.option(
    "--input",
    "src",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="original Wan DiT (.safetensors / folder / sharded folder or its index.json) or a Self/Causal Forcing .pt",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="new diffusers transformer folder",
)
@click.option(
    "--key", default="generator", show_default=True, help="entry of a training checkpoint (generator / generator_ema)"
)
@click.option(
    "--head-dim", type=click.IntRange(1), default=128, show_default=True, help="attention head size (Wan: 128)"
)
@click.option(
    "--arch", help="check the checkpoint is this architecture (wan2.1-t2v-1.3b, wan2.1-t2v-14b, wan2.2-ti2v-5b)"
)
def convert(src: Path, out_dir: Path, key: str, head_dim: int, arch: str | None) -> None:
    """Convert a Wan2.1 / Wan2.2-TI2V-5B / Self-Forcing / Causal-Forcing DiT checkpoint (a file, a folder or a
    sharded folder with its index) to a diffusers transformer folder."""
    from full.architectures import get_architecture
    from full.convert import convert_checkpoint

    architecture = None if arch is None else get_architecture(arch)
    path = convert_checkpoint(src, out_dir, key=key, head_dim=head_dim, arch=architecture)
    click.echo(f"wrote {path} (load with CausalWanTransformer3DModel.from_pretrained)")


# ------------------------------------------------------------------------------------------------ training
# `prepare` and `train`: thin layers over full.prepare, full.config and full.pipeline.


@full.command("prepare")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Folder of the prepared set.")
@click.option("--videos", type=click.Path(exists=True, file_okay=False), help="Folder of NAME.mp4 + NAME.txt pairs.")
@click.option("--latents", type=click.Path(exists=True, file_okay=False), help="Folder of NAME.safetensors + NAME.txt.")
@click.option("--prompts", type=click.Path(exists=True, dir_okay=False), help="Text file, one prompt per line (DMD).")
@click.option(
    "--synthetic", type=click.IntRange(1), help="Write N synthetic moving-shape latent videos (no models needed)."
)
@click.option(
    "--synthetic-videos",
    type=click.IntRange(1),
    help="Write N synthetic moving-shape MP4s + captions (input for --videos).",
)
@click.option(
    "--wan",
    type=click.Path(exists=True, file_okay=False),
    help="Wan pipeline folder (vae/, text_encoder/, tokenizer/).",
)
@click.option("--vae", type=click.Path(exists=True, file_okay=False), help="AutoencoderKLWan folder (else WAN/vae).")
@click.option("--text-encoder", type=click.Path(exists=True, file_okay=False), help="UMT5 encoder folder.")
@click.option("--tokenizer", type=click.Path(exists=True, file_okay=False), help="Tokenizer folder.")
@click.option(
    "--frames",
    type=click.IntRange(1),
    default=81,
    show_default=True,
    help="Video frames (1 + 4k), or latent frames with --synthetic.",
)
@click.option("--height", type=POSITIVE, default=480, show_default=True, help="Pixels, or latent height (--synthetic).")
@click.option("--width", type=POSITIVE, default=832, show_default=True, help="Pixels, or latent width (--synthetic).")
@click.option("--channels", type=POSITIVE, default=4, show_default=True, help="Latent channels (--synthetic).")
@click.option("--text-length", type=POSITIVE, default=512, show_default=True, help="Text tokens per prompt.")
@click.option("--text-dim", type=POSITIVE, default=32, show_default=True, help="Text embedding width (--synthetic).")
@click.option("--negative-prompt", default=None, help="Negative prompt for CFG (default: Wan's).")
@click.option("--shard-size", type=POSITIVE, default=64, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="Default: CUDA when available.")
@click.option("--restart", is_flag=True, help="Delete what an earlier, different request left in --out first.")
def prepare_command(
    out, videos, latents, prompts, synthetic, synthetic_videos, wan, vae, text_encoder, tokenizer, frames, height,
    width, channels, text_length, text_dim, negative_prompt, shard_size, seed, device, restart,
) -> None:  # fmt: skip
    """Encode (video, caption) pairs, pre-encoded latents or prompts into a sharded safetensors set.

    \b
    cf-ref full prepare --videos clips/ --wan Wan2.1-T2V-1.3B-Diffusers --out data/latents
    cf-ref full prepare --prompts prompts.txt --wan Wan2.1-T2V-1.3B-Diffusers --out data/prompts
    cf-ref full prepare --synthetic 64 --frames 4 --height 8 --width 8 --text-length 16 --out data/shapes

    An interrupted prepare resumes when run again with the same request; another request on the same --out is
    refused (--restart deletes the earlier files first).
    """
    from cf_ref import run_lock
    from cf_ref.io import remove_stale_temporaries
    from full import prepare as prep
    from full.synthetic import SyntheticSpec, write_synthetic_latents

    sources = [x is not None for x in (videos, latents, prompts, synthetic, synthetic_videos)]
    if sum(sources) != 1:
        raise click.UsageError("give exactly one of --videos, --latents, --prompts, --synthetic, --synthetic-videos")
    out = out_folder(out)
    with run_lock.exit_on_sigterm(), run_lock.locked(out, on_takeover=click.echo):
        removed = remove_stale_temporaries(out)  # what a killed prepare was writing; the folder is ours now
        if removed:
            click.echo(f"removed {len(removed)} temporary file(s) left by an interrupted prepare")
        if synthetic is not None:
            spec = SyntheticSpec(synthetic, frames, channels, height, width, text_length, text_dim, seed)
            click.echo(write_synthetic_latents(out, spec, shard_size, restart=restart))
            return
        if synthetic_videos is not None:
            click.echo(prep.write_synthetic_videos(out, synthetic_videos, frames, height, width, seed, restart=restart))
            return
        import torch

        negative = prep.WAN_NEGATIVE_PROMPT if negative_prompt is None else negative_prompt
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        text = prep.load_text_encoder(wan, text_encoder, tokenizer, max_length=text_length, device=device)
        if videos is not None:
            vae_model = prep.load_vae(wan, vae, device=device)
            sizes = (frames, height, width, shard_size, negative)
            click.echo(prep.prepare_videos(videos, out, vae_model, text, *sizes, restart=restart))
        elif latents is not None:
            click.echo(prep.prepare_latents(latents, out, text, shard_size, negative, restart=restart))
        else:
            click.echo(prep.prepare_prompts(prompts, out, text, shard_size, negative, restart=restart))


@full.command("train", context_settings={"ignore_unknown_options": False})
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="YAML or TOML file.")
@click.option(
    "--preset", type=click.Choice(list(PRESETS)), help="tiny: random tiny models + synthetic data, CPU, offline."
)
@click.option("--recipe", type=_choice(Recipe), help="The stage chain and the options it fixes (full.recipes).")
@click.option("--stage", type=_choice(Stage), help="Run one stage.")
@click.option("--forcing", type=_choice(Forcing), help="ar-diffusion context (ablation: diffusion).")
@click.option("--teacher", type=_choice(PairTeacher), help="ode-pairs teacher (baseline: bidirectional).")
@click.option("--out", help="Output folder (overrides the config's `out`).")
@click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a setting, e.g. dmd.guidance_scale=3.0."
)
@click.option("--resume", is_flag=True, help="Skip finished stages and continue an interrupted one exactly.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="Default: CUDA when available.")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def train_command(config_path, preset, recipe, stage, forcing, teacher, out, sets, resume, device, overrides) -> None:
    """Train one stage or a whole recipe; the same command on 1 process or under torchrun.

    \b
    cf-ref full train --preset tiny                                    # every stage, tiny, CPU, offline
    cf-ref full train --config run.yaml --stage ar-diffusion
    torchrun --nproc_per_node 8 -m cf_ref.cli full train --config run.yaml dmd.guidance_scale=3.0
    cf-ref full train --config run.yaml --resume
    """
    from cf_ref import run_lock
    from full.config import build_config
    from full.distributed import init_distributed, shutdown
    from full.pipeline import run_training

    extra = list(sets) + list(overrides)
    extra += [f"ar_diffusion.forcing={forcing}"] if forcing else []
    extra += [f"ode_pairs.teacher={teacher}"] if teacher else []
    if out is not None and not out.strip():
        raise click.BadParameter("is empty; give a folder", param_hint="'--out'")
    config = build_config(config_path, extra, preset=preset, recipe=recipe, out=out)
    ctx = init_distributed(device)
    try:
        with run_lock.exit_on_sigterm():
            results = run_training(config, Stage(stage) if stage else None, resume=resume, ctx=ctx)
    finally:
        shutdown(ctx)
    if ctx.is_main:
        for s, path in results.items():
            click.echo(f"{s.value}: {path}")


@full.command("compare")
@click.option("--preset", default="small", show_default=True, help="small-track preset: smoke (seconds) or small")
@click.option("--seeds", type=int, default=3, show_default=True, help="seeds 0 … N-1 (N >= 1)")
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="output folder (resumed if it holds this run)"
)
@click.option(
    "--recipe",
    "recipes",
    multiple=True,
    help="recipe to run (repeatable; default: causal-forcing, causal-forcing-pp, self-forcing, causvid)",
)
@click.option(
    "--variant", "variants", multiple=True, help="setting for every recipe, e.g. dmd.score_shift=8 (repeatable)"
)
@click.option("--jobs", type=int, default=1, show_default=True, help="seeds run in parallel processes")
@click.option("--no-figures", is_flag=True, help="skip the figures and videos (compare.json / compare.md only)")
def compare_command(preset, seeds, out, recipes, variants, jobs, no_figures) -> None:
    """Every recipe on bouncing-shape videos with known ground truth, through the full track's stages, scored.

    \b
    cf-ref full compare --preset smoke --seeds 1 --out runs/smoke
    cf-ref full compare --preset small --seeds 3 --out runs/small
    """
    from full.small.compare import run_compare

    run_compare(preset, seeds, out, recipes, variants, figures=not no_figures, jobs=jobs)
    click.echo(f"wrote {out / 'compare.json'} and {out / 'compare.md'}")


@full.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
def report_command(run_dir) -> None:
    """Loss curves of every stage (PNG + PDF) and a markdown summary of a run's metrics.jsonl files."""
    from full.report import write_report

    click.echo(f"wrote {write_report(run_dir)}")


@full.command("plan")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="YAML or TOML file.")
@click.option("--preset", type=click.Choice(list(PRESETS)), help="tiny: the tiny models (a quick check).")
@click.option("--gpus", type=int, default=1, show_default=True, help="GPUs (ranks) the training runs on.")
@click.option(
    "--gpu", "gpu_name", default="h100-sxm-80gb", show_default=True, help="GPU kind (an unknown one lists all)."
)
@click.option(
    "--mfu", type=float, default=0.4, show_default=True, help="assumed model FLOPs utilisation of the roofline"
)
@click.option(
    "--real-score", help="DMD real score folder or name (e.g. Wan2.1-T2V-14B), overriding dmd.real_score_path"
)
@click.option(
    "--stage", "stages", multiple=True, help="simulate only these (ar-diffusion, ode-pairs, ode, cd, dmd, sampling)"
)
@click.option(
    "--full-depth", is_flag=True, help="simulate every block (slow) instead of extrapolating from two shallow runs"
)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="also write the plan as JSON")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def plan_command(config_path, preset, gpus, gpu_name, mfu, real_score, stages, full_depth, json_out, overrides) -> None:
    """Peak memory per GPU, FLOPs and roofline time of every stage step and of sampling, by simulation (no GPU).

    \b
    cf-ref full plan --config configs/full/causal_forcing_chunkwise.yaml --gpus 8 --real-score Wan2.1-T2V-14B
    """
    from cf_ref.io import write_json
    from full.config import build_config
    from full.plan.gpus import gpu as named_gpu
    from full.plan.planner import make_plan, plan_json, plan_text
    from full.plan.stages import BUILDERS

    if gpus < 1:
        raise click.BadParameter(f"must be >= 1, got {gpus}", param_hint="'--gpus'")
    named_gpu(gpu_name)  # an unknown GPU fails before the simulation
    config = build_config(config_path, list(overrides), preset=preset)
    families = stages or tuple(BUILDERS)
    plan = make_plan(config, [gpus], gpu_name, mfu, real_score, families, extrapolate=not full_depth)
    click.echo(plan_text(plan))
    if json_out is not None:
        write_json(json_out, plan_json(plan))
        click.echo(f"wrote {json_out}")
