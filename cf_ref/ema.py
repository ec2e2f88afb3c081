r"""Exponential moving average of parameters: :math:`\theta^- \leftarrow \mu\,\theta^- + (1-\mu)\,\theta`."""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_copy(module: nn.Module) -> nn.Module:
    """A frozen deep copy of ``module`` to serve as the EMA / target network."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, decay: float) -> None:
    r"""In place :math:`\theta^- \leftarrow \mu\theta^- + (1-\mu)\theta` over matching parameters and float buffers."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must lie in [0, 1], got {decay}")
    src = dict(source.named_parameters())
    for name, p in target.named_parameters():
        if name not in src:
            raise KeyError(f"EMA target has parameter {name!r} that the source lacks")
        p.lerp_(src[name].detach().to(p.dtype), 1.0 - decay)
    src_buf = dict(source.named_buffers())
    for name, b in target.named_buffers():
        if b.is_floating_point() and name in src_buf:
            b.copy_(src_buf[name])
