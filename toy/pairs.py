r"""ODE-distillation pairs from the exact toy teachers: the two pair teachers of the injectivity argument
(:class:`cf_ref.recipes.PairTeacher`).

Both integrate a teacher PF-ODE on the grid :math:`\mathrm{shift}(1 - n/N)`, n = 0…N
(:func:`cf_ref.schedule.sigma_grid`), and keep the states at the few-step student's σ list
(:func:`cf_ref.schedule.few_step_sigmas`, which lies on the grid when the student's step count divides N):

* ``PairTeacher.BIDIRECTIONAL`` (CausVid / Self Forcing initialisation): joint noise ε → x0 through the bidirectional
  teacher, :math:`x_0 = \Phi(\varepsilon)`; every frame's trajectory depends on the noise of all frames;
* ``PairTeacher.AR`` — *causal pairs* (Causal Forcing): per-frame noise :math:`\varepsilon_i \to x_{0,i}` through the AR teacher's
  PF-ODE given the clean data context :math:`c_{<i}` (teacher forcing), :math:`x_{0,i} = \Phi_i(\varepsilon_i; c)`.

A :class:`PairSet` holds ``states [B, K, F, d]`` at ``sigmas [K]``, the end points ``target [B, F, d]``, the
noise ``[B, F, d]`` (= the state at σ = 1) and, for the AR teacher, the clean ``context [B, F, d]``.
Everything is batched over B; the teachers run in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from cf_ref.recipes import PairTeacher
from cf_ref.schedule import FewStepSchedule, grid_index
from cf_ref.solvers import Method
from toy.data import SequenceData
from toy.teachers import ARTeacher, BidirectionalTeacher


@dataclass(frozen=True)
class GridConfig:
    """The exact teachers' PF-ODE grid and the students' step lists: one :class:`cf_ref.schedule.FewStepSchedule`
    per student step count, all on one teacher grid, plus the ODE solver.

    ``teacher_steps`` N must be a multiple of every student step count so the kept states lie on the grid. The
    shift is the toy's 2.0, not Wan's 5.0 (docs/toy.md §1 says why).
    """

    teacher_steps: int = 48
    shift: float = 2.0
    method: Method = Method.RK4
    student_steps: tuple[int, ...] = (4, 1)

    def __post_init__(self) -> None:
        if not self.student_steps or any(k < 1 for k in self.student_steps):
            raise ValueError(f"student_steps must be positive step counts, got {self.student_steps}")
        for k in self.student_steps:
            self.schedule(k).check_on_grid()

    def schedule(self, num_steps: int) -> FewStepSchedule:
        """The ``num_steps``-step student's schedule (timesteps 1000, 1000(1-1/K), …) on this teacher grid."""
        return FewStepSchedule.uniform(num_steps, self.shift, self.teacher_steps)

    def grid(self) -> Tensor:
        """``[N + 1]`` decreasing σ's from 1 to 0 (float64)."""
        return self.schedule(self.student_steps[0]).grid()

    def student_sigmas(self, num_steps: int) -> Tensor:
        """The ``num_steps``-step student's σ list ``[K]``."""
        return self.schedule(num_steps).student_sigmas()

    def kept_sigmas(self) -> Tensor:
        """The union of all students' σ lists, decreasing: the states every pair set keeps ``[K_all]``."""
        indices = sorted({n for k in self.student_steps for n in self.schedule(k).student_indices()})
        return self.grid()[indices]


@dataclass(frozen=True)
class PairSet:
    """ODE pairs of one pair teacher. states ``[B, K, F, d]`` at ``sigmas [K]`` (decreasing, ``sigmas[0] = 1``);
    target ``[B, F, d]`` the teacher's end point; noise ``[B, F, d]``; context ``[B, F, d]`` or None."""

    teacher: PairTeacher
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
        if (self.teacher is PairTeacher.AR) != (self.context is not None):
            raise ValueError("AR-teacher (causal) pairs carry their clean context; bidirectional pairs carry none")
        if self.context is not None and self.context.shape != self.target.shape:
            raise ValueError(f"context must be [B, F, d] = {tuple(self.target.shape)}, got {tuple(self.context.shape)}")

    def __len__(self) -> int:
        return self.states.shape[0]

    def state_index(self, sigma: float) -> int:
        """Index k of the kept state at ``sigma`` (:func:`cf_ref.schedule.grid_index`); raises if none is kept there."""
        return grid_index(self.sigmas, sigma, f"the kept states are at {self.sigmas.tolist()}")

    def select(self, sigmas: Sequence[float] | Tensor) -> PairSet:
        """The same pairs restricted to the kept states at ``sigmas`` (e.g. one student's list)."""
        index = [self.state_index(s) for s in torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1).tolist()]
        return PairSet(self.teacher, self.states[:, index], self.sigmas[index], self.target, self.noise, self.context)

    def head(self, num: int) -> PairSet:
        """The first ``num`` pairs."""
        ctx = None if self.context is None else self.context[:num]
        return PairSet(self.teacher, self.states[:num], self.sigmas, self.target[:num], self.noise[:num], ctx)

    def to(self, dtype: torch.dtype) -> PairSet:
        """A copy with the tensors cast to ``dtype`` (networks train in float32)."""
        ctx = None if self.context is None else self.context.to(dtype)
        return PairSet(
            self.teacher, self.states.to(dtype), self.sigmas, self.target.to(dtype), self.noise.to(dtype), ctx
        )


def bidirectional_pairs(data: SequenceData, noise: Tensor, grid: GridConfig) -> PairSet:
    """Joint PF-ODE of the exact bidirectional teacher from ``noise: [B, F, d]`` (float64)."""
    keep = grid.kept_sigmas()
    traj = BidirectionalTeacher(data).flow_map(noise, grid.grid(), grid.method, keep_at=keep)
    return PairSet(PairTeacher.BIDIRECTIONAL, traj.states, keep, traj.end, noise)


def causal_pairs(data: SequenceData, noise: Tensor, context: Tensor, grid: GridConfig) -> PairSet:
    """Teacher-forcing PF-ODE of the exact AR teacher (frame-wise) from ``noise`` given clean ``context``
    (both ``[B, F, d]``, float64)."""
    keep = grid.kept_sigmas()
    traj = ARTeacher(data).flow_map(noise, context, grid.grid(), grid.method, keep_at=keep)
    return PairSet(PairTeacher.AR, traj.states, keep, traj.end, noise, context)


def make_pairs(
    data: SequenceData,
    teacher: PairTeacher,
    num_pairs: int,
    grid: GridConfig,
    generator: torch.Generator | None = None,
) -> PairSet:
    """Draw ``num_pairs`` fresh noises (and, for the AR teacher, data contexts) and build the pairs."""
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1, got {num_pairs}")
    noise = torch.randn(num_pairs, data.num_frames, data.dim, generator=generator, dtype=torch.float64)
    if teacher is PairTeacher.BIDIRECTIONAL:
        return bidirectional_pairs(data, noise, grid)
    context, _ = data.sample(num_pairs, generator)
    return causal_pairs(data, noise, context, grid)
