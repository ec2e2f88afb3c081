"""``cf-ref full plan``: a training configuration → every stage step simulated on ``N`` GPUs of a named kind.

:func:`make_plan` resolves the architectures (the base model of ``model.path``, the DMD real score of
``dmd.real_score_path`` or an override; the tiny preset's in code), simulates (:mod:`full.plan.simulate`) and
keeps what the report needs; :func:`plan_text` / :func:`plan_json` render it (:mod:`full.plan.report`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cf_ref.errors import InvalidValue
from full.config import ModelPreset, Parallelism, RunConfig
from full.plan.architectures import architecture
from full.plan.gpus import gpu as named_gpu
from full.plan.layers import LayerPlan, layer_plan
from full.plan.memory import GIB
from full.plan.report import PlanContext, does_not_fit, op_count_json, rows, table
from full.plan.roofline import DEFAULT_MFU
from full.plan.simulate import StepPlan, simulate
from full.plan.stages import BUILDERS, Architectures


@dataclass(frozen=True)
class Plan:
    """The simulated steps per rank count, the names of the architectures, the report context, the run time,
    the depths simulated."""

    steps: dict[int, list[StepPlan]]
    base: str
    real_score: str
    context: PlanContext
    seconds: float
    layers: LayerPlan


def architectures(config: RunConfig, real_score: str | None = None) -> tuple[Architectures, str, str]:
    """The base and real-score architectures of ``config`` (``real_score``: a folder or name overriding
    ``dmd.real_score_path``) and their names."""
    if config.model.preset is ModelPreset.TINY:
        from full.tiny import TINY, transformer_kwargs

        base_name, base, tokens = "tiny", transformer_kwargs(), TINY.text_length
    else:
        if config.model.path is None:
            raise InvalidValue("the plan needs model.path (a folder or a release name such as Wan2.1-T2V-1.3B)")
        (base_name, base), tokens = architecture(config.model.path), 512
    source = real_score or config.dmd.real_score_path
    real_name, real = (base_name, base) if source is None else architecture(source)
    return Architectures(base, real, tokens), base_name, real_name


def make_plan(
    config: RunConfig,
    ranks: Sequence[int],
    gpu_name: str = "h100-sxm-80gb",
    mfu: float = DEFAULT_MFU,
    real_score: str | None = None,
    families: Sequence[str] = tuple(BUILDERS),
    progress: Callable[[str], None] | None = None,
    count_flops: bool = True,
    extrapolate: bool = True,
    depths: int = 3,
) -> Plan:
    """Simulate ``families`` of ``config`` on each rank count of ``ranks`` (see module doc); ``extrapolate``: from
    ``depths`` (3 or 2) shallow simulations (:mod:`full.plan.layers`), else at full depth."""
    if not ranks or min(ranks) < 1:
        raise InvalidValue(f"the number of GPUs must be >= 1, got {list(ranks)}")
    unknown = [f for f in families if f not in BUILDERS]
    if unknown:
        raise InvalidValue(f"unknown stage {unknown[0]!r}; known: {', '.join(BUILDERS)}")
    gpu = named_gpu(gpu_name)
    if not 0.0 < mfu <= 1.0:
        raise InvalidValue(f"MFU must lie in (0, 1], got {mfu}")
    arch, base_name, real_name = architectures(config, real_score)
    p = config.parallel
    ctx = PlanContext(
        gpu,
        mfu,
        config.video.latent_frames,
        config.model.block_size,
        p.strategy is Parallelism.FSDP,
        p.gradient_checkpointing,
    )
    layers = layer_plan(arch, extrapolate, depths)
    start = time.perf_counter()
    steps = simulate(config, arch, ranks, families, progress, count_flops, layers)
    return Plan(steps, base_name, real_name, ctx, time.perf_counter() - start, layers)


def plan_text(plan: Plan) -> str:
    """The report: a table per rank count, then one line per step that does not fit."""
    c = plan.context
    head = (
        f"plan: base {plan.base}, real score {plan.real_score}; {c.latent_frames} latent frames, block {c.block_size}; "
        f"{c.gpu.name} ({c.gpu.memory_gib:.1f} GiB, {c.gpu.bf16_flops / 1e12:.0f} TFLOP/s bf16 dense, "
        f"{c.gpu.bandwidth / 1e12:.2f} TB/s); assumed MFU {c.mfu:g}; {plan.layers.describe()}, in {plan.seconds:.0f} s"
    )
    parts = [head]
    spreads = [p.spread for steps in plan.steps.values() for p in steps if p.spread is not None]
    if plan.layers.extrapolated and spreads:
        parts.append(f"largest spread of an extrapolated peak: {max(spreads) / GIB:.2f} GiB (full.plan.layers)")
    elif plan.layers.extrapolated:
        parts.append("extrapolated from two depths: no spread measured (full.plan.layers)")
    for n, steps in plan.steps.items():
        parts += [f"\n{n} GPU{'s' if n > 1 else ''} (memory per GPU; sampling runs on one GPU):", table(steps, c)]
        parts += [f"does not fit: {line}" for line in does_not_fit(steps, c)]
    return "\n".join(parts)


def plan_json(plan: Plan) -> dict:
    """The plan as JSON-ready data (bytes and FLOPs exact, GiB and seconds as floats)."""
    c = plan.context
    return {
        "base": plan.base,
        "real_score": plan.real_score,
        "gpu": c.gpu.__dict__,
        "mfu": c.mfu,
        "latent_frames": c.latent_frames,
        "block_size": c.block_size,
        "simulation_seconds": plan.seconds,
        "simulation": plan.layers.json(),
        "ranks": {
            str(n): {
                "steps": rows(steps, c),
                "ops": {p.step: op_count_json(p.ops) for p in steps},
                "does_not_fit": does_not_fit(steps, c),
            }
            for n, steps in plan.steps.items()
        },
    }
