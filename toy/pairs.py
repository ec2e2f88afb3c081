r"""ODE-distillation pairs from the exact toy teachers: the two routes of the injectivity argument.

Both routes integrate a teacher PF-ODE on the grid :math:`\mathrm{shift}(1 - n/N)`, n = 0…N
(:func:`cf_ref.schedule.sigma_grid`), and keep the states at the few-step student's σ list
(:func:`cf_ref.schedule.few_step_sigmas`, which lies on the grid when the student's step count divides N):

* **bidirectional** (CausVid / Self Forcing initialisation): joint noise ε → x0 through the bidirectional
  teacher, :math:`x_0 = \Phi(\varepsilon)`; every frame's trajectory depends on the noise of all frames;
* **causal** (Causal Forcing): per-frame noise :math:`\varepsilon_i \to x_{0,i}` through the AR teacher's
  PF-ODE given the clean data context :math:`c_{<i}` (teacher forcing), :math:`x_{0,i} = \Phi_i(\varepsilon_i; c)`.

A :class:`PairSet` holds ``states [B, K, F, d]`` at ``sigmas [K]``, the end points ``target [B, F, d]``, the
noise ``[B, F, d]`` (= the state at σ = 1) and, for the causal route, the clean ``context [B, F, d]``.
Everything is batched over B; the teachers run in float64.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from cf_ref.schedule import few_step_sigmas, sigma_grid, uniform_few_step_timesteps
from cf_ref.solvers import Method
from toy.data import SequenceData
from toy.teachers import ARTeacher, BidirectionalTeacher


class Route(enum.Enum):
    """Which teacher made the pairs (and so what the causal student sees)."""

    BIDIRECTIONAL = "bidirectional"  # joint PF-ODE; the student for frame i sees the states of frames ≤ i
    CAUSAL = "causal"  # AR PF-ODE with clean data context; the student sees frame i's state + context < i


@dataclass(frozen=True)
class GridConfig:
    """The teacher's PF-ODE grid and the students' step lists (published convention, see module doc).

    ``teacher_steps`` N must be a multiple of every student step count so the kept states lie on the grid.
    """

    teacher_steps: int = 48
    shift: float = 2.0
    method: Method = Method.RK4
    student_steps: tuple[int, ...] = (4, 1)

    def __post_init__(self) -> None:
        if not self.student_steps or any(k < 1 for k in self.student_steps):
            raise ValueError(f"student_steps must be positive step counts, got {self.student_steps}")
        bad = [k for k in self.student_steps if self.teacher_steps % k]
        if bad:
            lcm = math.lcm(*self.student_steps)
            raise ValueError(
                f"teacher_steps={self.teacher_steps} is not a multiple of the student step counts {bad}; "
                f"use a multiple of {lcm}"
            )

    def grid(self) -> Tensor:
        """``[N + 1]`` decreasing σ's from 1 to 0 (float64)."""
        return sigma_grid(self.teacher_steps, self.shift)

    def student_sigmas(self, num_steps: int) -> Tensor:
        """The ``num_steps``-step student's σ list ``[K]`` (1000, 1000(1-1/K), … through the shift)."""
        return few_step_sigmas(uniform_few_step_timesteps(num_steps), self.shift)

    def kept_sigmas(self) -> Tensor:
        """The union of all students' σ lists, decreasing: the states every pair set keeps ``[K_all]``."""
        values = torch.cat([self.student_sigmas(k) for k in self.student_steps])
        grid = self.grid()
        on_grid = grid[(grid[:, None] - values[None]).abs().min(dim=1).values < 1e-9]
        return on_grid


@dataclass(frozen=True)
class PairSet:
    """ODE pairs of one route. states ``[B, K, F, d]`` at ``sigmas [K]`` (decreasing, ``sigmas[0] = 1``);
    target ``[B, F, d]`` the teacher's end point; noise ``[B, F, d]``; context ``[B, F, d]`` or None."""

    route: Route
    states: Tensor
    sigmas: Tensor
    target: Tensor
    noise: Tensor
    context: Tensor | None = None

    def __post_init__(self) -> None:
        b, k, f = self.states.shape[:3]
        if self.sigmas.shape != (k,):
            raise ValueError(f"sigmas must be [K={k}], got {tuple(self.sigmas.shape)}")
        if self.target.shape != self.states[:, 0].shape or self.noise.shape != self.target.shape:
            raise ValueError(
                f"target {tuple(self.target.shape)} and noise {tuple(self.noise.shape)} must be [B, F, d] = "
                f"{tuple(self.states[:, 0].shape)}"
            )
        if (self.route is Route.CAUSAL) != (self.context is not None):
            raise ValueError("causal pairs carry their clean context; bidirectional pairs carry none")
        if self.context is not None and self.context.shape != self.target.shape:
            raise ValueError(f"context must be [B, F, d] = {tuple(self.target.shape)}, got {tuple(self.context.shape)}")

    def __len__(self) -> int:
        return self.states.shape[0]

    def select(self, sigmas: Sequence[float] | Tensor, tol: float = 1e-9) -> PairSet:
        """The same pairs restricted to the kept states at ``sigmas`` (e.g. one student's list)."""
        want = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
        have = self.sigmas.to(torch.float64)
        index = []
        for s in want.tolist():
            hits = torch.nonzero((have - s).abs() <= tol).flatten()
            if len(hits) == 0:
                raise ValueError(f"σ={s:.6g} is not among the kept states {have.tolist()}")
            index.append(int(hits[0]))
        return PairSet(self.route, self.states[:, index], self.sigmas[index], self.target, self.noise, self.context)

    def head(self, num: int) -> PairSet:
        """The first ``num`` pairs."""
        ctx = None if self.context is None else self.context[:num]
        return PairSet(self.route, self.states[:num], self.sigmas, self.target[:num], self.noise[:num], ctx)

    def to(self, dtype: torch.dtype) -> PairSet:
        """A copy with the tensors cast to ``dtype`` (networks train in float32)."""
        ctx = None if self.context is None else self.context.to(dtype)
        return PairSet(self.route, self.states.to(dtype), self.sigmas, self.target.to(dtype), self.noise.to(dtype), ctx)


def bidirectional_pairs(data: SequenceData, noise: Tensor, grid: GridConfig) -> PairSet:
    """Joint PF-ODE of the exact bidirectional teacher from ``noise: [B, F, d]`` (float64)."""
    keep = grid.kept_sigmas()
    traj = BidirectionalTeacher(data).flow_map(noise, grid.grid(), grid.method, keep_at=keep)
    return PairSet(Route.BIDIRECTIONAL, traj.states, keep, traj.end, noise)


def causal_pairs(data: SequenceData, noise: Tensor, context: Tensor, grid: GridConfig) -> PairSet:
    """Teacher-forcing PF-ODE of the exact AR teacher (frame-wise) from ``noise`` given clean ``context``
    (both ``[B, F, d]``, float64)."""
    keep = grid.kept_sigmas()
    traj = ARTeacher(data).flow_map(noise, context, grid.grid(), grid.method, keep_at=keep)
    return PairSet(Route.CAUSAL, traj.states, keep, traj.end, noise, context)


def make_pairs(
    data: SequenceData, route: Route, num_pairs: int, grid: GridConfig, generator: torch.Generator | None = None
) -> PairSet:
    """Draw ``num_pairs`` fresh noises (and, for the causal route, data contexts) and build the pairs."""
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1, got {num_pairs}")
    noise = torch.randn(num_pairs, data.num_frames, data.dim, generator=generator, dtype=torch.float64)
    if route is Route.BIDIRECTIONAL:
        return bidirectional_pairs(data, noise, grid)
    context, _ = data.sample(num_pairs, generator)
    return causal_pairs(data, noise, context, grid)
