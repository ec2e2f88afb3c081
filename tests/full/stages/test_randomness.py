"""full.stages.randomness: one micro-batch's generators are a pure function of (seed, stage, step, micro-batch,
purpose) and the rank; the shared one leaves the rank out."""

from __future__ import annotations

import torch

from full.config import build_config
from full.distributed import DistContext
from full.stages.randomness import step_random


def draws(rnd) -> tuple[list[float], list[float], list[float]]:
    return (
        torch.rand(4, generator=rnd.cpu).tolist(),
        rnd.normal((4,), torch.device("cpu")).tolist(),
        torch.rand(4, generator=rnd.shared).tolist(),
    )


def test_draws_replay_exactly_and_differ_by_every_part():
    config = build_config(preset="tiny")
    ctx = DistContext()
    base = draws(step_random(config, ctx, "dmd", 3, 1, "critic"))
    assert draws(step_random(config, ctx, "dmd", 3, 1, "critic")) == base  # a resumed run draws the same
    for other in [("ode", 3, 1, "critic"), ("dmd", 4, 1, "critic"), ("dmd", 3, 0, "critic"), ("dmd", 3, 1, "loss")]:
        changed = draws(step_random(config, ctx, *other))
        assert all(a != b for a, b in zip(changed, base)), other


def test_only_the_shared_generator_agrees_across_processes():
    config = build_config(preset="tiny")
    r0, r1 = (draws(step_random(config, DistContext(rank=r, world_size=2), "dmd", 0, 0, "generator")) for r in (0, 1))
    assert r0[0] != r1[0] and r0[1] != r1[1]  # per-process noise and σ draws
    assert r0[2] == r1[2]  # exit steps every process must agree on
