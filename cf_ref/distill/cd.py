r"""Consistency distillation along a teacher's PF-ODE (Causal Forcing++).

Consistency function in the rectified-flow parameterisation,

.. math::  f_\theta(x, \sigma) = x - \sigma\, v_\theta(x, \sigma),

which satisfies the boundary condition :math:`f_\theta(x, 0) = x` exactly. On a σ grid
:math:`1 = \sigma_0 > \dots > \sigma_N = 0` (``N = 48`` in the published setting), with a grid index
n ∈ [0, N) (one per video, below):

.. math::
    x_n = (1-\sigma_n)x_0 + \sigma_n\varepsilon, \quad
    \hat x_{n+1} = \mathrm{step}_{\text{teacher}}(x_n;\ \sigma_n \to \sigma_{n+1}), \quad
    \mathcal L = \lVert f_\theta(x_n, \sigma_n) - \mathrm{sg}\,f_{\theta^-}(\hat x_{n+1}, \sigma_{n+1})\rVert^2

where :math:`\theta^-` is an EMA target network. The grid index n is drawn once per video
(:func:`sample_grid_indices`), as the authors' ``model/naive_consistency.py`` draws one index per step for the
whole batch of teacher-forced videos. With the teacher's exact flow, :math:`f^\star =` flow
map makes the loss zero; in the causal variant the teacher is the AR teacher with clean (teacher
forcing) context, so no stored pairs are needed.

:class:`CDTimes` says how the networks read the grid: exactly (the default: told σ_n, :math:`f = x - \sigma_n v`,
teacher step :math:`\sigma_n - \sigma_{n+1}`), or as the authors' CD trainer does (``model/naive_consistency.py``
of thu-ml/Causal-Forcing: bf16 timesteps, a bf16 step, :math:`\hat x_0` on the wrapper's 1000-step grid).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cf_ref.granularity import Granularity, sample_indices
from cf_ref.losses import x0_regression_loss
from cf_ref.schedule import NUM_TRAIN_TIMESTEPS, broadcast_sigma, interpolate, x0_from_velocity
from cf_ref.solvers import Method, VelocityField, step
from cf_ref.time_grid import nearest_grid_sigma, rounded_sigma, train_grid


@dataclass(frozen=True)
class CDTimes:
    r"""How the CD loss reads its grid :math:`1 = \sigma_0 > \dots > \sigma_N = 0` (``[N+1]``); the states are always
    :math:`x_n = (1-\sigma_n)x_0 + \sigma_n\varepsilon` (the authors' ``add_noise`` on their 48-step scheduler is exact).

    told: ``[N+1]`` the level each network is told at grid point n (timestep ``1000·told[n]``); x0_sigma: ``[N+1]``
    the σ of :math:`f = x - \texttt{x0\_sigma}[n]\,v`; teacher_step: ``[N]`` the teacher's Euler step,
    :math:`\hat x_{n+1} = x_n - \texttt{teacher\_step}[n]\,v_T(x_n, \texttt{told}[n])`.
    """

    told: Tensor
    x0_sigma: Tensor
    teacher_step: Tensor

    @classmethod
    def exact(cls, grid: Tensor) -> CDTimes:
        r"""Told σ_n, :math:`f = x - \sigma_n v`, step :math:`\sigma_n - \sigma_{n+1}` (what :func:`step` with Euler does)."""
        return cls(grid, grid, grid[:-1] - grid[1:])

    @classmethod
    def rounded(cls, grid: Tensor, shift: float, dtype: torch.dtype = torch.bfloat16) -> CDTimes:
        r"""The authors' CD trainer (``NaiveConsistency.generator_loss``): timesteps built as ``dtype`` tensors, so
        every network is told :math:`\mathrm{bf16}(1000\sigma_n)` (:func:`cf_ref.time_grid.rounded_sigma`); the
        teacher's step ``dt = (t_n - t_{n+1}) / 1000`` is computed in ``dtype`` arithmetic (0.0040 instead of 0.00424
        at n = 0); :math:`\hat x_0` uses the point of the wrapper's 1000-step grid of ``shift``
        (:func:`cf_ref.time_grid.train_grid`) nearest to the told timestep. At σ = 0, which that grid lacks and the
        authors never reach (they never draw the last interval), :math:`f = x` is kept.
        """
        g = grid.detach().to(torch.float64)
        told = rounded_sigma(g, dtype)
        x0_sigma = torch.where(told > 0, nearest_grid_sigma(told, train_grid(shift)), torch.zeros_like(told))
        t = (g * NUM_TRAIN_TIMESTEPS).to(dtype)
        dt = (t[:-1] - t[1:]) / NUM_TRAIN_TIMESTEPS  # in dtype arithmetic, as the authors' bf16 tensors
        return cls(told, x0_sigma, dt.to(torch.float64))


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
    times: CDTimes | None = None,
) -> Tensor:
    r"""Discrete consistency-distillation loss (see module doc).

    student, target (EMA copy), teacher: velocity fields; x0, eps: ``[B, F, *S]``; grid: ``[N+1]``
    decreasing from 1 to 0; index: ``[B, F]`` in [0, N). The teacher step and the target run without
    gradient. ``times`` (Euler only): what the networks are told, the σ of f and the teacher's step
    (:class:`CDTimes`); None = exact.
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
    if times is not None:
        return _loss_with_times(student, target, teacher, x_n, idx, times, method, n_steps)
    with torch.no_grad():
        x_next = step(teacher, x_n, sigma_n, sigma_next, method)
        f_target = consistency_function(target, x_next, sigma_next)
    return x0_regression_loss(consistency_function(student, x_n, sigma_n), f_target)


def _loss_with_times(
    student: VelocityField,
    target: VelocityField,
    teacher: VelocityField,
    x_n: Tensor,
    idx: Tensor,
    times: CDTimes,
    method: Method,
    n_steps: int,
) -> Tensor:
    """The loss of :func:`consistency_distillation_loss` with the grid read through ``times``."""
    if method is not Method.EULER:
        raise ValueError(f"CDTimes fixes an Euler teacher step; got method {method}")
    if (
        times.told.shape != (n_steps + 1,)
        or times.x0_sigma.shape != (n_steps + 1,)
        or len(times.teacher_step) != n_steps
    ):
        raise ValueError(f"CDTimes must hold [N+1] told / x0_sigma and [N] steps for the {n_steps}-step grid")
    told, x0_sigma, dt = (
        v.to(device=x_n.device, dtype=x_n.dtype) for v in (times.told, times.x0_sigma, times.teacher_step)
    )

    def f(field: VelocityField, x: Tensor, n: Tensor) -> Tensor:
        return x0_from_velocity(x, field(x, told[n]), x0_sigma[n])

    with torch.no_grad():
        x_next = x_n - broadcast_sigma(dt[idx], x_n) * teacher(x_n, told[idx])
        f_target = f(target, x_next, idx + 1)
    return x0_regression_loss(f(student, x_n, idx), f_target)
