r"""How the authors' code discretises time, for the options that reproduce it.

cf-ref computes with exact levels: a state at σ is converted to :math:`\hat x_0 = x - \sigma v` with that σ, and a
network is told the timestep ``t = 1000σ`` in float32. The authors' code (thu-ml/Causal-Forcing, built on
guandeh17/Self-Forcing) differs in two places, both reproduced here so the options of the full track can switch
them on:

* **The 1000-step training grid.** ``WanDiffusionWrapper`` (``utils/wan_wrapper.py``) converts every velocity to
  :math:`\hat x_0` with the σ of the point of its scheduler nearest to the timestep it was given
  (``_convert_flow_pred_to_x0``: ``argmin |timesteps - t|``). The scheduler is
  ``FlowMatchScheduler(shift=s, sigma_min=0, extra_one_step=True).set_timesteps(1000)``, whose points are

  .. math::  \sigma_k = \mathrm{shift}_s(1 - k/N), \qquad k = 0 \dots N-1,\ N = 1000

  (σ = 0 is not a point; the smallest is :math:`\mathrm{shift}_s(1/N)`). Its shift is the wrapper's
  ``timestep_shift``: 5 where the config passes ``model_kwargs``, the default **8** where it does not (the DMD
  real and fake scores, ``model/base.py``). :func:`train_grid`, :func:`nearest_grid_sigma`.
* **Half-precision timesteps.** The CD trainer (``model/naive_consistency.py``) builds its timesteps as bf16
  tensors, so the networks are told :math:`\mathrm{bf16}(1000\sigma)` (spacing 4 between 512 and 1024, 2 between
  256 and 512, …). :func:`rounded_sigma`.

All functions take and return σ's (``t = 1000σ``); shapes are preserved.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cf_ref.schedule import NUM_TRAIN_TIMESTEPS, shift_sigma

AUTHORS_SCORE_SHIFT = 8.0
"""``timestep_shift`` of the authors' DMD real and fake score wrappers (``WanDiffusionWrapper``'s default: the
wrappers are built without the config's ``model_kwargs``)."""


def train_grid(shift: float, num_steps: int = NUM_TRAIN_TIMESTEPS, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""The authors' training grid ``[N]``: :math:`\sigma_k = \mathrm{shift}(1 - k/N)`, k = 0…N-1, decreasing from 1."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    base = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)[:-1]
    return shift_sigma(base, shift).to(dtype)


def nearest_grid_sigma(sigma: Tensor, grid: Tensor) -> Tensor:
    r"""The point of ``grid`` (``[N]``) nearest to each level of ``sigma`` (any shape), in σ's dtype and shape.

    Nearest in σ is nearest in ``t = 1000σ`` (the authors' ``argmin |timesteps - t|``); a tie goes to the first
    (largest) point, as ``argmin`` does.
    """
    if grid.ndim != 1 or len(grid) == 0:
        raise ValueError(f"grid must be a non-empty 1-D tensor of levels, got shape {tuple(grid.shape)}")
    s = sigma.detach().to(torch.float64).reshape(-1, 1)
    g = grid.detach().to(device=s.device, dtype=torch.float64)
    index = (g[None, :] - s).abs().argmin(dim=1)
    return g[index].reshape(sigma.shape).to(sigma.dtype)


def rounded_sigma(sigma: Tensor, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    r"""The level whose timestep is ``1000σ`` stored in ``dtype``: :math:`\mathrm{dtype}(1000\sigma)/1000`, computed
    in float64 and returned in σ's dtype (what a network is told when its timestep tensor has that dtype)."""
    t = (sigma.detach().to(torch.float64) * NUM_TRAIN_TIMESTEPS).to(dtype)
    return (t.to(torch.float64) / NUM_TRAIN_TIMESTEPS).to(sigma.dtype)
