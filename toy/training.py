"""The toy track's one optimisation loop: Adam with cosine decay over a loss closure.

Every toy stage (base model, AR teachers, ODE / CD students, DMD generator and critic) is a loss closure
``loss_fn(step) -> scalar`` handed to :func:`train`; the loop itself knows nothing of the stage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cf_ref.losses import finite_or_raise


@dataclass(frozen=True)
class OptimConfig:
    steps: int = 2000
    lr: float = 2e-3
    final_lr_fraction: float = 0.05  # cosine decay from lr to lr·fraction
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    warmup_steps: int = 0  # linear warm-up of the learning rate over the first steps; 0 = none

    def __post_init__(self) -> None:
        if self.steps < 1 or self.lr <= 0:
            raise ValueError(f"need steps >= 1 and lr > 0, got {self.steps}, {self.lr}")
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"need 0 <= warmup_steps < steps, got {self.warmup_steps} (steps {self.steps})")


def make_optimizer(params: Iterable[nn.Parameter], config: OptimConfig) -> tuple[torch.optim.Optimizer, Callable]:
    """Adam(W) and a cosine schedule ``lr_t = lr·w_t·(f + (1-f)·(1+cos(πt/T))/2)`` with the linear warm-up
    ``w_t = min(1, (t + 1)/W)`` over W = ``warmup_steps`` (``w_t = 1`` when W = 0); returns (optimizer, scheduler)."""
    opt = torch.optim.AdamW(list(params), lr=config.lr, weight_decay=config.weight_decay)
    f, warmup = config.final_lr_fraction, config.warmup_steps

    def factor(t: int) -> float:
        ramp = min(1.0, (t + 1) / warmup) if warmup else 1.0
        return ramp * (f + (1 - f) * 0.5 * (1 + math.cos(math.pi * min(t, config.steps) / config.steps)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def optimizer_step(module: nn.Module, opt: torch.optim.Optimizer, loss: Tensor, grad_clip: float | None) -> float:
    """Backward, optional global-norm clipping, step; returns the gradient norm before clipping."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in module.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip is not None else float("inf"))
    opt.step()
    return float(norm)


def train(
    module: nn.Module,
    loss_fn: Callable[[int], Tensor],
    config: OptimConfig,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Minimise ``loss_fn(step)`` over ``module``'s parameters for ``config.steps`` steps; returns the loss history.

    Raises ``FloatingPointError`` on a non-finite loss (the caller keeps its last good state).
    """
    opt, sched = make_optimizer(module.parameters(), config)
    history = []
    module.train()
    for t in range(config.steps):
        loss = finite_or_raise(loss_fn(t), f"loss at step {t}")
        optimizer_step(module, opt, loss, config.grad_clip)
        sched.step()
        history.append(float(loss.detach()))
        if on_step is not None:
            on_step(t, history[-1])
    module.eval()
    return history
