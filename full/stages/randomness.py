"""The randomness of one micro-batch: generators seeded by ``(seed, stage, step, micro-batch, purpose)`` and the
rank (:mod:`cf_ref.seeding`), so a resumed run draws exactly what the uninterrupted one drew."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cf_ref.seeding import generator
from full.config import RunConfig
from full.distributed import DistContext


@dataclass(frozen=True)
class StepRandom:
    """The generators of one micro-batch: ``cpu``/``device`` for per-process draws, ``shared`` for draws every
    process must agree on (it leaves the rank out)."""

    cpu: torch.Generator
    device: torch.Generator
    shared: torch.Generator

    def normal(self, shape: tuple[int, ...] | torch.Size, device: torch.device) -> Tensor:
        """Standard normal noise from the per-process device generator."""
        return torch.randn(tuple(shape), generator=self.device, device=device)


def step_random(config: RunConfig, ctx: DistContext, stage: str, step: int, micro: int, purpose: str) -> StepRandom:
    """The generators of micro-batch ``micro`` of ``step`` (see module doc)."""
    parts = (config.seed, stage, step, micro, purpose)
    return StepRandom(
        cpu=generator("cpu", *parts, ctx.rank),
        device=generator(ctx.device, *parts, ctx.rank),
        shared=generator("cpu", *parts, "shared"),
    )
