"""Wan's sinusoidal timestep features, computed in float64 as the authors' Wan does (the causal model's
time-embedding path uses it; diffusers' stock module stays untouched)."""

from __future__ import annotations

import torch
from torch import Tensor


def timestep_sinusoid(timestep: Tensor, dim: int) -> Tensor:
    r"""Wan's sinusoidal timestep features in float64: ``timestep`` ``[N]`` → ``[N, dim]`` (``dim`` even).

    .. math::  e(t) = \bigl[\cos(t\,\omega_0), \dots, \cos(t\,\omega_{h-1}),\
               \sin(t\,\omega_0), \dots, \sin(t\,\omega_{h-1})\bigr], \qquad \omega_i = 10000^{-i/h},\ h = dim/2

    — ``sinusoidal_embedding_1d`` of the authors' Wan (``wan/modules/model.py``), which computes it in float64.
    diffusers' ``Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0)`` is the same formula in float32, whose
    rounding of :math:`t\,\omega_i` (t up to 1000) alone moves the features by up to ~3e-5.
    """
    if dim % 2:
        raise ValueError(f"the timestep sinusoid needs an even dimension, got {dim}")
    half = dim // 2
    omega = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=timestep.device) / half)
    angles = torch.outer(timestep.to(torch.float64), omega)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
