r"""The conditional expectation a causal student of each pair teacher's pairs converges to, with the exact teachers.

ODE regression on pairs :math:`(u, x_0)` is minimised by :math:`f^\star_i = \mathbb E[x_{0,i} \mid u_{V_i}]`,
where :math:`u_{V_i}` is what the student reads for frame i. :func:`cf_ref.injectivity.conditional_statistics`
estimates it by holding the visible inputs fixed, redrawing the hidden ones M times from their conditional
law and pushing every copy through the teacher; this module supplies the teacher maps and the laws for a
kept state at level σ (a state on the teacher's PF-ODE trajectory):

* bidirectional pairs (``PairTeacher.BIDIRECTIONAL``) — input = the joint state :math:`x_\sigma` (all frames
  at σ), visible = frames ≤ i. The PF-ODE carries the law of ε to the forward marginal, so :math:`x_\sigma` is
  distributed as the noised mixture (means :math:`(1-\sigma)\mu_k`, covariances
  :math:`(1-\sigma)^2\Sigma_k + \sigma^2 I`); the hidden frames are drawn from that mixture conditioned on the
  visible ones (:func:`toy.gmm.condition`), and the teacher map integrates the joint PF-ODE from σ to 0. At
  σ = 1 this is "resample the unseen noise".
* causal pairs (``PairTeacher.AR``) — input = frame i's state plus the clean context, visible = frame i. Frame
  j's state given the context is distributed as the AR teacher's noised conditional law of frame j; the teacher
  map integrates the AR PF-ODE of every frame from σ to 0 with the clean context. Frame i's end point does not
  read the other frames' states, so the estimate equals the flow map up to round-off (η = 0) — computed, not
  assumed.
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import Tensor

from cf_ref.injectivity import ConditionalStatistics, HiddenSampler, conditional_statistics, resample_gaussian_noise
from cf_ref.masks import block_causal_visibility
from cf_ref.schedule import grid_index
from toy import gmm
from toy.data import SequenceData
from toy.pairs import GridConfig
from toy.teachers import ARTeacher, BidirectionalTeacher


def grid_from(grid: GridConfig, sigma: float) -> Tensor:
    """The tail of the teacher grid that starts at ``sigma`` (which must lie on it): ``[n + 1]``, ending at 0."""
    g = grid.grid()
    tail = g[grid_index(g, sigma, "kept states lie on the teacher grid") :]
    if len(tail) < 2:
        raise ValueError("σ = 0 is already the end point; there is nothing to integrate")
    return tail


def joint_state_sampler(data: SequenceData, sigma: float) -> HiddenSampler:
    """:data:`HiddenSampler` for joint states at level σ: hidden frames from the noised data law given the visible ones."""
    if float(sigma) == 1.0:
        return resample_gaussian_noise
    law = gmm.noised(data.mixture, float(sigma))

    def resample(inputs: Tensor, hidden: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
        out = repeat(inputs, "b f d -> b m f d", m=num).clone()
        hidden_frames = torch.nonzero(hidden).flatten().tolist()
        if not hidden_frames:
            return out
        visible_frames = torch.nonzero(~hidden).flatten().tolist()
        observed, free = data.frame_index(visible_frames), data.frame_index(hidden_frames)
        cond = gmm.condition(law, observed, data.flatten(inputs)[:, observed], free)
        draws = gmm.sample_rows(cond, num, generator)  # [B, M, len(hidden)·d]
        out[:, :, hidden] = rearrange(draws, "b m (f d) -> b m f d", d=data.dim)
        return out

    return resample


def ar_state_sampler(data: SequenceData, sigma: float, context: Tensor) -> HiddenSampler:
    """:data:`HiddenSampler` for AR states at level σ: hidden frame j from the AR teacher's noised law given ``context[:, :j]``."""
    if float(sigma) == 1.0:
        return resample_gaussian_noise
    teacher = ARTeacher(data)

    def resample(inputs: Tensor, hidden: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
        out = repeat(inputs, "b f d -> b m f d", m=num).clone()
        for j in torch.nonzero(hidden).flatten().tolist():
            law = gmm.noised(teacher.block_mixture(j, context), float(sigma))
            out[:, :, j] = gmm.sample_rows(law, num, generator)
        return out

    return resample


def bidirectional_statistics(
    data: SequenceData,
    states: Tensor,
    sigma: float,
    grid: GridConfig,
    num_resamples: int,
    generator: torch.Generator | None = None,
) -> ConditionalStatistics:
    r"""Statistics of :math:`x_{0,i}` given the joint state of frames ≤ i at level σ (bidirectional pairs).

    states: ``[B, F, d]`` float64 states at ``sigma`` (a point of the teacher grid). Returns mean / variance
    ``[B, F, d]`` and the per-frame non-injectivity index ``[F]``.
    """
    teacher = BidirectionalTeacher(data)
    tail = grid_from(grid, sigma)

    def teacher_map(u: Tensor) -> Tensor:
        return teacher.flow_map(u, tail, grid.method).end

    vis = block_causal_visibility(data.num_frames)
    sampler = joint_state_sampler(data, sigma)
    return conditional_statistics(teacher_map, states, vis, num_resamples, sampler, generator)


def causal_statistics(
    data: SequenceData,
    states: Tensor,
    sigma: float,
    context: Tensor,
    grid: GridConfig,
    num_resamples: int,
    generator: torch.Generator | None = None,
) -> ConditionalStatistics:
    r"""Statistics of :math:`x_{0,i}` given frame i's AR state at level σ and the clean context (causal pairs).

    states, context: ``[B, F, d]`` float64. Returns mean / variance ``[B, F, d]`` and the index ``[F]``.
    """
    teacher = ARTeacher(data)
    tail = grid_from(grid, sigma)

    def teacher_map(u: Tensor) -> Tensor:
        return teacher.flow_map(u, context, tail, grid.method).end

    vis = torch.eye(data.num_frames, dtype=torch.bool)
    sampler = ar_state_sampler(data, sigma, context)
    return conditional_statistics(teacher_map, states, vis, num_resamples, sampler, generator)
