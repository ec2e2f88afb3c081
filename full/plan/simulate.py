"""Simulate every stage step of a configuration on ``N`` ranks: peak memory per rank, FLOPs and bytes per step.

For each stage (:mod:`full.plan.stages`) the models are built fake, the optimizers' state is created first (as
after the first real step: AdamW's moments exist during every later step), then each step runs once under the
memory tracker (:func:`full.plan.memory.track_peak`) and, on one rank, once more under the op counter
(:func:`full.plan.flops.count_ops`). Never both at once: ``FlopCounterMode``'s module tracker
(``torch.utils.module_tracker.ModuleTracker``) registers backward hooks on every submodule's inputs and outputs,
also in the forward that gradient checkpointing re-runs during the backward, and with it active the memory tracker
sees every block's full activations held to the end of the step (measured at Wan-1.3B width and 18,720 tokens:
1.5 GiB more per block instead of the checkpointed block input's 0.05 GiB). With data parallelism every rank
computes the same per-sample work, so the FLOPs per rank do not depend on ``N``; the memory does (FSDP2 shards),
so it is simulated per ``N``. Real-size steps are extrapolated from shallow simulations (:mod:`full.plan.layers`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from full.config import Parallelism, RunConfig
from full.plan.collectives import fake_collectives
from full.plan.flops import OpCount, count_ops
from full.plan.layers import LayerPlan, extrapolate_memory, extrapolate_ops, with_blocks
from full.plan.memory import FakeScalarsReadZero, MemoryPeak, simulated_ranks, track_peak
from full.plan.stages import BUILDERS, Architectures, StageStep


@dataclass(frozen=True)
class StepPlan:
    """One step's simulation: ``step`` name, ranks, peak memory of one rank, FLOPs/bytes of one rank (if counted)."""

    step: str
    ranks: int
    memory: MemoryPeak
    ops: OpCount | None
    layers: LayerPlan | None = None  # how deep the simulations were (None: the architectures as given)
    spread: int | None = 0  # bytes: the extrapolated peak's spread (:mod:`full.plan.layers`); 0 when simulated in
    # full, None when extrapolated from two depths


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
        fake_collectives([*stage.models, *stage.tracked])
        create_optimizer_state(stage)
        out = []
        for name, run in stage.updates.items():
            peak = track_peak(run, [*stage.tracked, *stage.optimizers], stage.ema, stage.frozen)
            counted = None
            if count:  # a second run, outside the memory tracker (see module doc)
                with FakeScalarsReadZero():
                    ops = count_ops(run)[1]
                times = stage.repeats.get(name, 1)
                counted = OpCount(ops.flops * times, ops.bytes * times)
            out.append(StepPlan(name, ranks, peak, counted))
        return out


def simulate_depths(
    config: RunConfig, family: str, ranks: int, arch: Architectures, layers: LayerPlan, count: bool = True
) -> list[StepPlan]:
    """The steps of ``family`` at the depths of ``layers``: one full-depth simulation, or two or three shallow ones
    extrapolated linearly in the block count (:mod:`full.plan.layers`; FLOPs counted in the two shallowest)."""
    depths = layers.simulated
    runs = [
        simulate_family(config, family, ranks, with_blocks(arch, blocks), count and i < 2)
        for i, blocks in enumerate(depths)
    ]
    if not layers.extrapolated:
        return [dataclasses.replace(p, layers=layers) for p in runs[0]]
    xs, x = [d[0] for d in depths], layers.target[0]
    out = []
    for steps in zip(*runs, strict=True):
        memory, spread = extrapolate_memory([s.memory for s in steps], xs, x)
        ops = extrapolate_ops(steps[0].ops, steps[1].ops, xs[0], xs[1], x)
        out.append(StepPlan(steps[0].step, ranks, memory, ops, layers, spread))
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
    layers: LayerPlan | None = None,
) -> dict[int, list[StepPlan]]:
    """Every step of ``families`` for each rank count, at the depths of ``layers`` (default: the full depth).
    FLOPs are counted on the first rank count and shared; the :data:`RANK_INDEPENDENT` families are simulated
    once. ``progress`` gets a line after each simulation; ``count_flops=False``: memory only."""
    depth = (arch.base["num_layers"], arch.real_score["num_layers"])
    layers = layers or LayerPlan((depth,), depth)
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
            done = simulate_depths(config, family, n, arch, layers, count=count_flops and not counted)
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
        results[n] = [dataclasses.replace(p, ranks=n, ops=counted.get(p.step)) for p in plans]
    return results
