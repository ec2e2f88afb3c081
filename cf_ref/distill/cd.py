r"""Consistency distillation along a teacher's PF-ODE (Causal Forcing++).

Consistency function in the rectified-flow parameterisation,

.. math::  f_\theta(x, \sigma) = x - \sigma\, v_\theta(x, \sigma),

which satisfies the boundary condition :math:`f_\theta(x, 0) = x` exactly. On a σ grid
:math:`1 = \sigma_0 > \dots > \sigma_N = 0` (``N = 48`` in the published setting), with a per-block index
n ∈ [0, N):

.. math::
    x_n = (1-\sigma_n)x_0 + \sigma_n\varepsilon, \quad
    \hat x_{n+1} = \mathrm{step}_{\text{teacher}}(x_n;\ \sigma_n \to \sigma_{n+1}), \quad
    \mathcal L = \lVert f_\theta(x_n, \sigma_n) - \mathrm{sg}\,f_{\theta^-}(\hat x_{n+1}, \sigma_{n+1})\rVert^2

where :math:`\theta^-` is an EMA target network. The grid index n is drawn once per video
(:func:`sample_grid_indices`), as the authors' ``model/naive_consistency.py`` draws one index per step for the
whole batch of teacher-forced videos. With the teacher's exact flow, :math:`f^\star =` flow
map makes the loss zero; in the causal variant the teacher is the AR teacher with clean (teacher
forcing) context, so no stored pairs are needed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cf_ref.losses import x0_regression_loss
from cf_ref.schedule import Granularity, interpolate, sample_indices, x0_from_velocity
from cf_ref.solvers import Method, VelocityField, step


def consistency_function(model: VelocityField, x: Tensor, sigma: Tensor) -> Tensor:
    r""":math:`f(x,\sigma) = x - \sigma v(x,\sigma)`. x: ``[B, F, *S]``; sigma: ``[B, F]``."""
    return x0_from_velocity(x, model(x, sigma), sigma)


def sample_grid_indices(
    batch_size: int, num_frames: int, num_steps: int, generator: torch.Generator | None = None
) -> Tensor:
    """One grid index n ∈ [0, N) per video, repeated over its frames: ``[B, F]`` long (see module doc)."""
    return sample_indices(batch_size, num_frames, num_steps, Granularity.SAMPLE, generator=generator)


def consistency_distillation_loss(
    student: VelocityField,
    target: VelocityField,
    teacher: VelocityField,
    x0: Tensor,
    eps: Tensor,
    grid: Tensor,
    index: Tensor,
    method: Method = Method.EULER,
) -> Tensor:
    r"""Discrete consistency-distillation loss (see module doc).

    student, target (EMA copy), teacher: velocity fields; x0, eps: ``[B, F, *S]``; grid: ``[N+1]``
    decreasing from 1 to 0; index: ``[B, F]`` in [0, N). The teacher step and the target run without
    gradient.
    """
    if index.shape != x0.shape[:2]:
        raise ValueError(f"index must be [B, F] = {tuple(x0.shape[:2])}, got {tuple(index.shape)}")
    if grid.ndim != 1 or len(grid) < 2 or not bool((grid[1:] < grid[:-1]).all()):
        raise ValueError(f"grid must be a strictly decreasing 1-D σ grid [N+1] (from 1 towards 0), got {grid.tolist()}")
    n_steps = len(grid) - 1
    if int(index.min()) < 0 or int(index.max()) >= n_steps:
        raise ValueError(f"grid indices must lie in [0, {n_steps}), got [{int(index.min())}, {int(index.max())}]")
    g = grid.to(device=x0.device, dtype=x0.dtype)
    idx = index.to(x0.device)
    sigma_n, sigma_next = g[idx], g[idx + 1]
    x_n = interpolate(x0, eps, sigma_n)
    with torch.no_grad():
        x_next = step(teacher, x_n, sigma_n, sigma_next, method)
        f_target = consistency_function(target, x_next, sigma_next)
    return x0_regression_loss(consistency_function(student, x_n, sigma_n), f_target)
