r"""Probability-flow ODE solvers on a given σ grid.

The PF-ODE of the rectified-flow schedule (see :mod:`cf_ref.schedule`) is

.. math::  \frac{dx}{d\sigma} = v(x, \sigma), \qquad x(1) = \varepsilon,

and its flow map :math:`\Phi(\varepsilon) = x(0)`. A *velocity field* is any callable
``velocity(x, sigma) -> v`` with ``x: [B, *S]`` (usually ``[B, F, *S]``) and ``sigma`` a 0-d tensor of
``x``'s dtype (:func:`step` also passes ``[B]`` or ``[B, F]`` levels through); the solvers never look
inside ``x``. The grid may run either way (1 → 0 to sample,
0 → 1 to invert), and need not be uniform.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from cf_ref.schedule import broadcast_sigma, grid_index

VelocityField = Callable[[Tensor, Tensor], Tensor]


class Method(enum.Enum):
    EULER = "euler"  # order 1
    HEUN = "heun"  # order 2 (explicit trapezoid)
    RK4 = "rk4"  # order 4 (classic Runge–Kutta)


ORDER = {Method.EULER: 1, Method.HEUN: 2, Method.RK4: 4}


@dataclass(frozen=True)
class Trajectory:
    """Result of :func:`integrate`.

    end: ``[B, *S]`` state at ``grid[-1]``; states: ``[B, K, *S]`` states at the kept σ's (``None`` if
    none were requested); sigmas: ``[K]`` the kept σ's.
    """

    end: Tensor
    states: Tensor | None = None
    sigmas: Tensor | None = None


def step(velocity: VelocityField, x: Tensor, sigma: Tensor, sigma_next: Tensor, method: Method) -> Tensor:
    r"""One solver step from ``sigma`` to ``sigma_next`` (h = σ_next - σ).

    Euler: :math:`x + h v(x,\sigma)`. Heun: :math:`x + \tfrac h2 (k_1 + k_2)`, with
    :math:`k_2 = v(x + h k_1, \sigma + h)`. RK4: the classic four-stage rule.
    x: ``[B, *S]``; sigma, sigma_next: 0-d tensors, or per-sample/per-frame levels (``[B]``, ``[B, F]``)
    when the velocity field accepts them (each frame then takes its own step).
    """
    h = broadcast_sigma(sigma_next - sigma, x)
    k1 = velocity(x, sigma)
    if method is Method.EULER:
        return x + h * k1
    if method is Method.HEUN:
        k2 = velocity(x + h * k1, sigma_next)
        return x + 0.5 * h * (k1 + k2)
    if method is Method.RK4:
        mid = sigma + 0.5 * (sigma_next - sigma)
        k2 = velocity(x + 0.5 * h * k1, mid)
        k3 = velocity(x + 0.5 * h * k2, mid)
        k4 = velocity(x + h * k3, sigma_next)
        return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    raise ValueError(f"unknown method {method!r}")


def _keep_indices(grid: Tensor, keep_at: Sequence[float] | Tensor) -> list[int]:
    advice = "choose a grid that contains it, e.g. sigma_grid(N, shift) with N a multiple of the step count"
    return [grid_index(grid, s, advice) for s in torch.as_tensor(keep_at, dtype=torch.float64).reshape(-1).tolist()]


def integrate(
    velocity: VelocityField,
    x_init: Tensor,
    grid: Tensor,
    method: Method = Method.EULER,
    keep_at: Sequence[float] | Tensor | None = None,
) -> Trajectory:
    r"""Integrate :math:`dx/d\sigma = v(x,\sigma)` along ``grid`` (``[N+1]``, monotone) from ``x_init``.

    x_init: ``[B, *S]`` at ``grid[0]``. Returns a :class:`Trajectory` with the end point at ``grid[-1]``
    and, when ``keep_at`` lists σ values lying on the grid, the states there stacked as ``[B, K, *S]``
    (the "trajectory" that ODE distillation stores: e.g. the states at the few-step σ list).
    """
    if grid.ndim != 1 or len(grid) < 2:
        raise ValueError(f"grid must be 1-D with at least 2 points, got shape {tuple(grid.shape)}")
    diffs = grid[1:] - grid[:-1]
    if not (bool((diffs < 0).all()) or bool((diffs > 0).all())):
        raise ValueError("grid must be strictly monotone")
    keep = _keep_indices(grid, keep_at) if keep_at is not None else []
    g = grid.to(device=x_init.device, dtype=x_init.dtype)
    kept: dict[int, Tensor] = {}
    x = x_init
    for k in range(len(g)):
        if k in keep:
            kept[k] = x
        if k + 1 < len(g):
            x = step(velocity, x, g[k], g[k + 1], method)
    if not keep:
        return Trajectory(end=x)
    states = torch.stack([kept[k] for k in keep], dim=1)
    return Trajectory(end=x, states=states, sigmas=grid[keep])


def classifier_free_guidance(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    r"""CFG combination :math:`\hat v = v_\varnothing + w\,(v_c - v_\varnothing)`; w = 1 gives ``cond``.

    cond, uncond: velocities of one shape (``[B, F, *S]``); returns that shape."""
    return uncond + scale * (cond - uncond)


def guided_velocity(paired: VelocityField, x: Tensor, sigma: Tensor, scale: float) -> Tensor:
    r"""Classifier-free guidance in one batched call, :math:`v_\varnothing + w\,(v_c - v_\varnothing)`.

    ``paired([x ; x], [σ ; σ])`` must evaluate the conditional model on the first half of the batch and the
    unconditional one on the second (the caller stacks its conditioning — text and negative prompt — the same
    way). x: ``[B, F, *S]``; sigma: 0-d (shared) or per sample / per frame (``[B]``, ``[B, F]``). Returns
    ``[B, F, *S]``. Both tracks' guided teachers and the KV-cached guided sampler call this.
    """
    s = sigma if sigma.ndim == 0 else torch.cat([sigma, sigma])
    cond, uncond = paired(torch.cat([x, x]), s).chunk(2)
    return classifier_free_guidance(cond, uncond, scale)


def guided(paired: VelocityField, scale: float) -> VelocityField:
    r"""The velocity field :math:`(x, \sigma) \mapsto` :func:`guided_velocity` ``(paired, x, σ, scale)``."""

    def field(x: Tensor, sigma: Tensor) -> Tensor:
        return guided_velocity(paired, x, sigma, scale)

    return field
