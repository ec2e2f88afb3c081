"""The plan as a table, as JSON, and what to change when a step does not fit.

Remedies are estimates from the step's own breakdown (no second simulation): sharding with FSDP2 over ``N``
ranks divides the weights, gradients and optimizer state (frozen models included) by ``N``; CPU offload of the
frozen models or of the optimizer state removes them from the GPU; gradient checkpointing (when off) removes most
of the activations; fewer latent frames shrink the activations about in proportion.
"""

from __future__ import annotations

from dataclasses import dataclass

from full.plan.flops import OpCount
from full.plan.gpus import GPU
from full.plan.memory import GIB
from full.plan.roofline import chunk_rate, roofline
from full.plan.simulate import StepPlan


@dataclass(frozen=True)
class PlanContext:
    """What the table needs besides the steps: the GPU, the assumed MFU, the configuration's video and strategy."""

    gpu: GPU
    mfu: float
    latent_frames: int
    block_size: int
    sharded: bool
    checkpointing: bool


def remedies(plan: StepPlan, ctx: PlanContext) -> list[str]:
    """What would make ``plan`` fit on ``ctx.gpu``, each with its estimated saving (see module doc); [] if it fits."""
    m, excess = plan.memory, plan.memory.total - ctx.gpu.memory
    if excess <= 0:
        return []
    options: list[tuple[str, float]] = []
    states = m.parameters + m.gradients + m.optimizer + m.ema + m.frozen
    if plan.ranks == 1 or not ctx.sharded:
        options.append(
            ("train on 8 GPUs with parallel.strategy=fsdp (shards weights and optimizer state)", states * 7 / 8)
        )
    if m.frozen:
        where = "shard the frozen models (real score, teacher) over more GPUs or " if ctx.sharded else ""
        options.append((f"{where}keep the frozen models in CPU memory (offload)", m.frozen))
    if m.optimizer:
        options.append(("offload the optimizer state to the CPU", m.optimizer))
    if not ctx.checkpointing and m.activations:
        options.append(("parallel.gradient_checkpointing=true", 0.8 * m.activations))
    if m.activations:
        keep = max(0.0, 1 - excess / m.activations)
        frames = int(ctx.latent_frames * keep) // ctx.block_size * ctx.block_size
        if frames >= ctx.block_size:
            options.append(
                (f"fewer frames: video.latent_frames={frames}", m.activations * (1 - frames / ctx.latent_frames))
            )
    return [
        f"{text} (saves ~{saving / GIB:.1f} GiB{'' if saving >= excess else ', not enough alone'})"
        for text, saving in options
    ]


def does_not_fit(plans: list[StepPlan], ctx: PlanContext) -> list[str]:
    """One line per step that does not fit: which step, by how much, what to change."""
    lines = []
    for p in plans:
        fixes = remedies(p, ctx)
        if fixes:
            over = (p.memory.total - ctx.gpu.memory) / GIB
            lines.append(
                f"{p.step} on {p.ranks} × {ctx.gpu.name} needs {p.memory.total / GIB:.1f} GiB, "
                f"{over:.1f} GiB more than the {ctx.gpu.memory_gib:.1f} GiB it has; change: " + "; ".join(fixes)
            )
    return lines


def _time(plan: StepPlan, ctx: PlanContext) -> dict[str, float | None]:
    if plan.ops is None:
        return {"tflops": None, "seconds": None}
    if plan.step == "sampling":
        rate = chunk_rate(plan.ops, ctx.latent_frames, ctx.block_size, ctx.gpu, ctx.mfu)
        return {"tflops": rate.flops_per_chunk / 1e12, "seconds": rate.time_per_chunk.seconds, "fps": rate.fps}
    t = roofline(plan.ops, ctx.gpu, ctx.mfu)
    return {"tflops": plan.ops.flops / 1e12, "seconds": t.seconds, "bound": t.bound}


def rows(plans: list[StepPlan], ctx: PlanContext) -> list[dict]:
    """One JSON-ready row per step: memory split (GiB), fits, TFLOPs (per step; sampling: per chunk), time."""
    out = []
    for p in plans:
        row = {"step": p.step, "ranks": p.ranks, **{f"{k}_gib": v for k, v in p.memory.gib().items()}}
        row["fits"] = p.memory.total <= ctx.gpu.memory
        row["spread_gib"] = None if p.spread is None else p.spread / GIB
        row.update(_time(p, ctx))
        out.append(row)
    return out


COLUMNS = ("peak", "params", "grads", "optim", "EMA", "frozen", "acts")


def table(plans: list[StepPlan], ctx: PlanContext) -> str:
    """A Markdown table of :func:`rows` (memory of one rank in GiB)."""
    header = ["step", "GPUs", *(f"{c} GiB" for c in COLUMNS), "fits", "TFLOP", f"time s (MFU {ctx.mfu:g})"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    keys = ("total", "parameters", "gradients", "optimizer", "ema", "frozen", "activations")
    for r in rows(plans, ctx):
        mem = [f"{r[f'{k}_gib']:.3g}" for k in keys]
        flops = "–" if r["tflops"] is None else f"{r['tflops']:.3g}"
        if r["seconds"] is None:
            t = "–"
        elif r["step"] == "sampling":
            t = f"{r['seconds']:.3f}/chunk, {r['fps']:.0f} FPS"
        else:
            t = f"{r['seconds']:.3g}"
        fits = "yes" if r["fits"] else "**no**"
        lines.append("| " + " | ".join([r["step"], str(r["ranks"]), *mem, fits, flops, t]) + " |")
    return "\n".join(lines)


def op_count_json(ops: OpCount | None) -> dict | None:
    return None if ops is None else {"flops": ops.flops, "bytes": ops.bytes}
