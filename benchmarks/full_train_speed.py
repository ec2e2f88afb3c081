"""Time per training step and peak memory of every full-track stage.

Runs the real stages (``full.pipeline.run_training``, one process) on random-weight models and the synthetic
moving-shapes set rendered at the chosen latent size, then reads each stage's ``metrics.jsonl``:

* ar-diffusion / ode / cd: median ``step_time_s`` over the timed steps (the first ``--warmup`` are dropped);
* dmd: median of the steps that update the generator *and* the critic (every 5th) and of the critic-only steps;
* ode-pairs: seconds per video (48-step guided PF-ODE by default at the real size);
* peak memory: ``torch.cuda.max_memory_allocated`` on CUDA (per stage), the process's peak RSS on the CPU.

    python benchmarks/full_train_speed.py                                  # tiny models, CPU (seconds)
    python benchmarks/full_train_speed.py --size wan-1.3b --device cuda     # the published size, one GPU

``wan-1.3b``: Wan2.1-T2V-1.3B's DiT configuration with random weights (speed does not depend on their
values), batch 1, 21 latent frames of 60×104 (480×832 video), 512 text tokens of width 4096, bf16 with
gradient checkpointing; the DMD real score is a second 1.3B model.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from cf_ref.io import write_json
from cf_ref.machine import machine_info
from full.config import build_config
from full.distributed import init_distributed
from full.logs import read_metrics
from full.pipeline import run_training
from full.recipes import Stage
from full.synthetic import SyntheticSpec, write_synthetic_latents


def settings(args, out: Path, data: Path | None, model: Path | None) -> list[str]:
    s = args.steps + args.warmup
    common = [
        f"out={out}",
        "logging.progress=false",
        "logging.sample_count=0",
        f"ar_diffusion.loop.steps={s}",
        f"ode.loop.steps={s}",
        f"cd.loop.steps={s}",
        f"dmd.loop.steps={5 * s}",
        f"ode_pairs.max_pairs={args.pairs}",
        "ode_pairs.batch_size=1",
        "dmd.ema_start=0",
    ]
    for section in ("ar_diffusion", "ode", "cd", "dmd"):
        common += [f"{section}.loop.batch_size=1", f"{section}.loop.checkpoint_every={10 * s}"]
    if args.size == "tiny":
        return [
            *common,
            "model.tiny_base.steps=0",
            "model.tiny_base.videos=8",
            "schedule.ode_steps=8",
        ]
    return [
        *common,
        f"model.path={model}",
        f"data.latents={data}",
        "parallel.precision=bf16",
        "parallel.gradient_checkpointing=true",
    ]


def real_size_assets(root: Path, pairs: int) -> tuple[Path, Path]:
    """A random-weight Wan2.1-T2V-1.3B transformer folder and a synthetic set at 21×16×60×104."""
    from full.model import WAN21_T2V_1_3B, CausalWanTransformer3DModel

    model = root / "wan-1.3b-random"
    if not (model / "config.json").is_file():
        CausalWanTransformer3DModel(**WAN21_T2V_1_3B).to(torch.bfloat16).save_pretrained(model)
    data = root / "data"
    if not (data / "index.json").is_file():
        spec = SyntheticSpec(
            count=max(pairs, 4), frames=21, channels=16, height=60, width=104, text_length=512, text_dim=4096
        )
        write_synthetic_latents(data, spec)
    return model, data


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def median_after(values: list[float], warmup: int) -> float:
    timed = values[warmup:] or values
    return statistics.median(timed)


def time_stage(cfg, stage: Stage, ctx, out: Path, pairs: int, warmup: int) -> dict[str, float]:
    """Run one stage of ``cfg`` and read its speed: seconds per ODE pair video, per DMD generator(+critic) and
    critic step, or per step; and the peak memory (GPU allocator, or the process's RSS on CPU)."""
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    run_training(cfg, stage=stage, ctx=ctx)
    wall = time.perf_counter() - t0
    row: dict[str, float] = {}
    if stage is Stage.ODE_PAIRS:
        row["s_per_video"] = wall / pairs
    else:
        metrics = read_metrics(out / stage.value / "metrics.jsonl")
        if stage is Stage.DMD:
            gen = [m["step_time_s"] for m in metrics if "generator_loss" in m]
            critic = [m["step_time_s"] for m in metrics if "generator_loss" not in m]
            row["s_per_generator_and_critic_step"] = median_after(gen, 1)
            row["s_per_critic_step"] = median_after(critic, warmup)
        else:
            row["s_per_step"] = median_after([m["step_time_s"] for m in metrics], warmup)
    row["peak_gb"] = torch.cuda.max_memory_allocated() / 2**30 if ctx.device.type == "cuda" else peak_rss_gb()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "wan-1.3b"], default="tiny")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per stage (DMD: 5× as many)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=2, help="ODE pairs generated (timed per video)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--work", type=Path, default=None, help="folder for the run (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="cf-bench-"))
    model = data = None
    if args.size == "wan-1.3b":
        model, data = real_size_assets(work, args.pairs)
    ctx = init_distributed(args.device)
    results: dict[str, dict[str, float]] = {}
    # one run folder per recipe (a run folder keeps its recipe); CD starts from the AR teacher, trained untimed
    for recipe, untimed, timed in [
        ("causal-forcing", (), (Stage.AR_DIFFUSION, Stage.ODE_PAIRS, Stage.ODE, Stage.DMD)),
        ("causal-forcing-pp", (Stage.AR_DIFFUSION,), (Stage.CD,)),
    ]:
        out = work / recipe
        cfg = build_config(
            preset="tiny" if args.size == "tiny" else None, recipe=recipe, overrides=settings(args, out, data, model)
        )
        for stage in untimed:
            run_training(cfg, stage=stage, ctx=ctx)
        for stage in timed:
            results[stage.value] = row = time_stage(cfg, stage, ctx, out, args.pairs, args.warmup)
            print(stage.value, json.dumps({k: round(v, 4) for k, v in row.items()}), flush=True)
    report = {"machine": machine_info(), "size": args.size, "device": args.device, "results": results}
    print(json.dumps(report, indent=2))
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
