"""Simulate every stage step of a configuration on ``N`` ranks: peak memory per rank, FLOPs and bytes per step.

For each stage (:mod:`full.plan.stages`) the models are built fake, the optimizers' state is created first (as
after the first real step: AdamW's moments exist during every later step), then each step runs once under the
memory tracker (:func:`full.plan.memory.track_peak`) and, on one rank, the op counter
(:func:`full.plan.flops.count_ops`). With data parallelism every rank computes the same per-sample work, so the
FLOPs per rank do not depend on ``N``; the memory does (FSDP2 shards), so it is simulated per ``N``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from full.config import RunConfig
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
    config: RunConfig, family: str, ranks: int, arch: Architectures, count: bool = True
) -> list[StepPlan]:
    """The steps of stage ``family`` (a key of :data:`full.plan.stages.BUILDERS`) on ``ranks`` simulated ranks."""
    with simulated_ranks(ranks) as ctx:
        stage = BUILDERS[family](config, ctx, arch)
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
            peak = track_peak(step, tracked, stage.ema, stage.frozen, stage.cpu_mask_bytes)
            times = stage.repeats.get(name, 1)
            counted = OpCount(ops[0].flops * times, ops[0].bytes * times) if ops else None
            out.append(StepPlan(name, ranks, peak, counted))
        return out


def simulate(
    config: RunConfig, arch: Architectures, ranks: Iterable[int], families: Iterable[str] = tuple(BUILDERS)
) -> dict[int, list[StepPlan]]:
    """Every step of ``families`` for each rank count; FLOPs are counted once (on the first count) and shared."""
    results: dict[int, list[StepPlan]] = {}
    counted: dict[str, OpCount] = {}
    for n in ranks:
        plans = []
        for family in families:
            for p in simulate_family(config, family, n, arch, count=not counted):
                plans.append(p)
        for p in plans:
            if p.ops is not None:
                counted[p.step] = p.ops
        results[n] = [StepPlan(p.step, p.ranks, p.memory, counted.get(p.step)) for p in plans]
    return results
