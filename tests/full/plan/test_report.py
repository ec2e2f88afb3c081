from __future__ import annotations

from full.plan.flops import OpCount
from full.plan.gpus import GPU
from full.plan.memory import GIB, MemoryPeak
from full.plan.report import PlanContext, does_not_fit, remedies, rows, table
from full.plan.simulate import StepPlan

G = GPU("G80", bf16_flops=1e15, bandwidth=1e12, memory=80 * GIB)
CTX = PlanContext(G, 0.4, latent_frames=21, block_size=3, sharded=True, checkpointing=True)


def _plan(step: str, ranks: int, frozen: float, acts: float) -> StepPlan:
    parts = dict(parameters=10 * GIB, gradients=5 * GIB, optimizer=20 * GIB, ema=5 * GIB)
    total = sum(parts.values()) + frozen * GIB + acts * GIB
    mem = MemoryPeak(total=int(total), frozen=int(frozen * GIB), activations=int(acts * GIB), **parts)
    return StepPlan(step, ranks, mem, OpCount(int(1e15), int(1e12)))


def test_a_step_that_fits_needs_no_remedy():
    assert remedies(_plan("ode", 8, 0, 30), CTX) == []
    assert does_not_fit([_plan("ode", 8, 0, 30)], CTX) == []


def test_over_capacity_says_which_step_by_how_much_and_what_to_change():
    plan = _plan("dmd-generator", 1, frozen=28, acts=60)  # 128 GiB on an 80 GiB GPU
    (line,) = does_not_fit([plan], CTX)
    assert line.startswith("dmd-generator on 1 × G80 needs 128.0 GiB, 48.0 GiB more")
    assert "parallel.strategy=fsdp" in line and "frozen models" in line and "optimizer state" in line
    fixes = remedies(plan, CTX)
    assert any("fsdp" in f and "not enough" not in f for f in fixes)  # 7/8 of 68 GiB of states: enough
    assert any("CPU memory" in f and "not enough alone" in f for f in fixes)  # 28 GiB < 48 GiB
    frames = next(f for f in fixes if f.startswith("fewer frames"))
    assert "video.latent_frames=" in frames


def test_rows_and_table():
    plan = _plan("ode", 8, 0, 30)
    (row,) = rows([plan], CTX)
    assert row["fits"] and row["tflops"] == 1000 and row["seconds"] == 1e15 / (1e15 * 0.4)
    assert "| ode | 8 | 70 |" in table([plan], CTX)
