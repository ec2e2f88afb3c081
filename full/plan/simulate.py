"""Simulate every stage step of a configuration on ``N`` ranks: peak memory per rank, FLOPs and bytes per step.

For each stage (:mod:`full.plan.stages`) the models are built fake, the optimizers' state is created first (as
after the first real step: AdamW's moments exist during every later step), then each step runs once under the
memory tracker (:func:`full.plan.memory.track_peak`) and, on one rank, the op counter
(:func:`full.plan.flops.count_ops`). With data parallelism every rank computes the same per-sample work, so the
FLOPs per rank do not depend on ``N``; the memory does (FSDP2 shards), so it is simulated per ``N``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from full.config import Parallelism, RunConfig
from full.plan.flops import OpCount, count_ops
from full.plan.memory import MemoryPeak, simulated_ranks, track_peak
from full.plan.stages import BUILDERS, Architectures, StageStep


@dataclass(frozen=True)
class StepPlan:
    """One step's simulation: ``step`` name, ranks, peak memory of one rank, FLOPs/bytes of one rank (if counted)."""

    step: str
    ranks: int
    memory: MemoryPeak
    ops: OpCount | None


def create_optimizer_state(stage: StageStep) -> None:
    """Give every optimizer its state (AdamW: step, exp_avg, exp_avg_sq) with zero gradients, as after step 1."""
    for optim in stage.optimizers:
        params = [p for group in optim.param_groups for p in group["params"]]
        for p in params:
            p.grad = torch.zeros_like(p)
        optim.step()
        optim.zero_grad(set_to_none=True)


def simulate_family(
    config: RunConfig, family: str, ranks: int, arch: Architectures, count: bool = True, fake: bool = True
) -> list[StepPlan]:
    """The steps of stage ``family`` (a key of :data:`full.plan.stages.BUILDERS`) on ``ranks`` simulated ranks
    (``fake=False``: real tensors, one rank — a measurement to check the simulation against). Under DDP every
    rank holds the whole models, so one rank is simulated (DDP's gradient buckets, up to one more copy of the
    gradients, are not counted)."""
    sharded = config.parallel.strategy is Parallelism.FSDP
    with simulated_ranks(ranks if sharded else 1) as ctx:
        stage = BUILDERS[family](config, ctx, arch, fake)
        create_optimizer_state(stage)
        out = []
        for name, run in stage.updates.items():
            ops: list[OpCount] = []

            def step(run=run, ops=ops) -> None:
                if count:
                    ops.append(count_ops(run)[1])
                else:
                    run()

            tracked = [*stage.tracked, *stage.optimizers]
            peak = track_peak(step, tracked, stage.ema, stage.frozen)
            times = stage.repeats.get(name, 1)
            counted = OpCount(ops[0].flops * times, ops[0].bytes * times) if ops else None
            out.append(StepPlan(name, ranks, peak, counted))
        return out


def summary(plan: StepPlan) -> str:
    """One line: the step, its peak and split (GiB), its FLOPs."""
    split = ", ".join(f"{k} {v:.2f}" for k, v in plan.memory.gib().items())
    flops = "" if plan.ops is None else f", {plan.ops.flops / 1e12:.1f} TFLOP, {plan.ops.bytes / 1e9:.0f} GB moved"
    return f"{plan.step}: {split} GiB{flops}"


#: steps whose memory does not depend on the number of ranks: the ODE-pair teacher is replicated (each process
#: integrates its own pairs) and sampling runs on one GPU
RANK_INDEPENDENT = ("ode-pairs", "sampling")


def simulate(
    config: RunConfig,
    arch: Architectures,
    ranks: Iterable[int],
    families: Iterable[str] = tuple(BUILDERS),
    progress: Callable[[str], None] | None = None,
    count_flops: bool = True,
) -> dict[int, list[StepPlan]]:
    """Every step of ``families`` for each rank count. FLOPs are counted on the first rank count and shared; the
    :data:`RANK_INDEPENDENT` families are simulated once. ``progress`` gets a line after each simulation;
    ``count_flops=False``: memory only."""
    results: dict[int, list[StepPlan]] = {}
    counted: dict[str, OpCount] = {}
    once: dict[str, list[StepPlan]] = {}
    for n in ranks:
        plans = []
        for family in families:
            if family in once:
                plans += once[family]
                continue
            start = time.perf_counter()
            done = simulate_family(config, family, n, arch, count=count_flops and not counted)
            if family in RANK_INDEPENDENT:
                once[family] = done
            plans += done
            if progress is not None:
                progress(
                    f"{family} on {n} rank(s), {time.perf_counter() - start:.0f} s: " + "; ".join(map(summary, done))
                )
        for p in plans:
            if p.ops is not None:
                counted.setdefault(p.step, p.ops)
        results[n] = [StepPlan(p.step, n, p.memory, counted.get(p.step)) for p in plans]
    return results
