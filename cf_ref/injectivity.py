r"""Frame-level injectivity diagnostics for ODE-distillation pairs.

Setting. A deterministic teacher map :math:`x_0 = \Phi(u)` sends inputs ``u: [F, *S]`` (noise, or
trajectory states) to clean frames; it may also depend on a per-sample condition that the student
sees in full (text, or the clean context of teacher forcing), which the map closes over. When
predicting frame i, the causal student sees only the input frames :math:`V_i` (row i of a frame
visibility from :mod:`cf_ref.masks`). The map is *frame-level injective* for the student if
:math:`x_{0,i}` is a function of :math:`u_{V_i}` alone.

The MSE-optimal student is the conditional expectation
:math:`f^\star_i(u_{V_i}) = \mathbb E[x_{0,i} \mid u_{V_i}]`, with irreducible loss
:math:`\mathbb E\,\mathrm{Var}(x_{0,i}\mid u_{V_i})`. The non-injectivity index

.. math::  \eta_i = \frac{\mathbb E\,\mathrm{tr}\,\mathrm{Var}(x_{0,i} \mid u_{V_i})}{\mathrm{tr}\,\mathrm{Var}(x_{0,i})}
           \in [0, 1]

is 0 exactly when frame i is injective, and is estimated here by Monte Carlo: hold the visible part
of each outer sample fixed, resample the hidden part M times from its conditional law, push every
copy through the teacher map.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from einops import repeat
from torch import Tensor

TeacherMap = Callable[[Tensor], Tensor]
"""``inputs [B, M, F, *S] -> x0 [B, M, F, *S]``; copy ``(b, m)`` belongs to outer sample b."""

HiddenSampler = Callable[[Tensor, Tensor, int, "torch.Generator | None"], Tensor]
"""``(inputs [B, F, *S], hidden [F] bool, M, generator) -> [B, M, F, *S]``: M copies of each sample
with the hidden frames redrawn from their conditional law given the visible ones."""


def resample_gaussian_noise(
    inputs: Tensor, hidden: Tensor, num_resamples: int, generator: torch.Generator | None = None
) -> Tensor:
    """:data:`HiddenSampler` for i.i.d. standard-normal inputs (the noise ε at σ = 1).

    Frames are independent, so the hidden frames' conditional law is N(0, I) whatever the visible ones.
    inputs: ``[B, F, *S]``; hidden: ``[F]`` bool. Returns ``[B, M, F, *S]``.
    """
    _check_frame_set(inputs, hidden, "hidden")
    out = repeat(inputs, "b f ... -> b m f ...", m=num_resamples).clone()
    n_hidden = int(hidden.sum())
    if n_hidden:
        shape = (inputs.shape[0], num_resamples, n_hidden, *inputs.shape[2:])
        out[:, :, hidden] = torch.randn(shape, generator=generator, dtype=inputs.dtype).to(inputs.device)
    return out


def _check(inputs: Tensor, visibility: Tensor) -> None:
    if inputs.ndim < 2:
        raise ValueError(f"inputs must be [B, F, *S], got shape {tuple(inputs.shape)}")
    f = inputs.shape[1]
    if visibility.dtype != torch.bool or visibility.shape != (f, f):
        raise ValueError(
            f"visibility must be a bool [F, F] = [{f}, {f}] matrix, got {visibility.dtype} {tuple(visibility.shape)}"
        )


def _check_frame_set(inputs: Tensor, frames: Tensor, what: str) -> None:
    if inputs.ndim < 2:
        raise ValueError(f"inputs must be [B, F, *S], got shape {tuple(inputs.shape)}")
    f = inputs.shape[1]
    if frames.dtype != torch.bool or frames.shape != (f,):
        raise ValueError(f"{what} must be a bool [F] = [{f}] frame set, got {frames.dtype} {tuple(frames.shape)}")


def conditional_moments(
    teacher_map: TeacherMap,
    inputs: Tensor,
    visible: Tensor,
    num_resamples: int,
    resample: HiddenSampler = resample_gaussian_noise,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Monte Carlo :math:`\mathbb E[x_0 \mid u_V]` and :math:`\mathrm{Var}(x_0 \mid u_V)` for one visible set.

    inputs: ``[B, F, *S]`` outer samples; visible: ``[F]`` bool. Returns ``(mean, var, samples)`` with
    mean, var: ``[B, F, *S]`` (unbiased over the M resamples) and samples: ``[B, M, F, *S]`` the teacher
    outputs of every copy.
    """
    _check_frame_set(inputs, visible, "visible")
    if num_resamples < 2:
        raise ValueError(f"num_resamples must be >= 2 to estimate a variance, got {num_resamples}")
    copies = resample(inputs, ~visible, num_resamples, generator)
    x0 = teacher_map(copies)
    if x0.shape != copies.shape:
        raise ValueError(f"teacher_map returned {tuple(x0.shape)}, expected {tuple(copies.shape)}")
    return x0.mean(dim=1), x0.var(dim=1, unbiased=True), x0


@dataclass(frozen=True)
class ConditionalStatistics:
    r"""Per-frame Monte Carlo statistics of a teacher map under a frame visibility (see module doc).

    mean: ``[B, F, *S]`` :math:`\mathbb E[x_{0,i} \mid u_{V_i}]`; variance: ``[B, F, *S]``
    :math:`\mathrm{Var}(x_{0,i} \mid u_{V_i})` (unbiased over the M resamples); index: ``[F]`` the
    non-injectivity index :math:`\eta_i`.
    """

    mean: Tensor
    variance: Tensor
    index: Tensor


def conditional_statistics(
    teacher_map: TeacherMap,
    inputs: Tensor,
    visibility: Tensor,
    num_resamples: int,
    resample: HiddenSampler = resample_gaussian_noise,
    generator: torch.Generator | None = None,
) -> ConditionalStatistics:
    r"""Conditional mean, conditional variance and non-injectivity index from one Monte Carlo pass.

    inputs: ``[B, F, *S]`` outer samples; visibility: ``[F, F]`` bool (row i = inputs the student sees for
    frame i). Frame i's statistics come from the resamples of row i's hidden inputs; frames with equal rows
    share one pass; a row that hides nothing takes one teacher pass without resampling (variance and η are 0).
    :math:`\eta_i` divides the mean within-sample variance by the pooled variance of all
    ``B·M`` outputs, which by the law of total variance estimates :math:`\mathrm{Var}(x_{0,i})` with the same
    samples. :func:`conditional_expectation` and :func:`non_injectivity_index` are its two halves.
    """
    _check(inputs, visibility)
    if num_resamples < 2:
        raise ValueError(f"num_resamples must be >= 2 to estimate a variance, got {num_resamples}")
    mean = torch.empty_like(inputs)
    variance = torch.empty_like(inputs)
    eta = torch.empty(inputs.shape[1], dtype=inputs.dtype)
    for row, frames in _group_rows(visibility):
        if bool(row.all()):  # nothing hidden: the output is a function of the inputs (one pass, no resampling)
            mean[:, frames] = teacher_map(inputs[:, None])[:, 0][:, frames]
            variance[:, frames] = 0
            eta[frames] = 0
            continue
        m, var, x0 = conditional_moments(teacher_map, inputs, row, num_resamples, resample, generator)
        mean[:, frames] = m[:, frames]
        variance[:, frames] = var[:, frames]
        for i in frames:
            within = var[:, i].flatten(1).sum(dim=1).mean()
            total = x0[:, :, i].flatten(0, 1).flatten(1).var(dim=0, unbiased=True).sum()
            eta[i] = (within / total.clamp_min(torch.finfo(total.dtype).tiny)).cpu()
    return ConditionalStatistics(mean=mean, variance=variance, index=eta)


def conditional_expectation(
    teacher_map: TeacherMap,
    inputs: Tensor,
    visibility: Tensor,
    num_resamples: int,
    resample: HiddenSampler = resample_gaussian_noise,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Per-frame :math:`\mathbb E[x_{0,i} \mid u_{V_i}]`: ``[B, F, *S]``, frame i from row i of ``visibility``."""
    return conditional_statistics(teacher_map, inputs, visibility, num_resamples, resample, generator).mean


def non_injectivity_index(
    teacher_map: TeacherMap,
    inputs: Tensor,
    visibility: Tensor,
    num_resamples: int,
    resample: HiddenSampler = resample_gaussian_noise,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Per-frame non-injectivity index :math:`\eta_i` (see module doc): ``[F]``.

    inputs: ``[B, F, *S]`` outer samples; visibility: ``[F, F]`` bool (row i = inputs the student sees
    for frame i). The denominator is the pooled variance of all ``B·M`` outputs, which by the law of
    total variance estimates :math:`\mathrm{Var}(x_{0,i})` with the same samples.
    """
    return conditional_statistics(teacher_map, inputs, visibility, num_resamples, resample, generator).index


def _group_rows(visibility: Tensor) -> list[tuple[Tensor, list[int]]]:
    """Group the frames whose visibility rows are equal, so each visible set is resampled once."""
    groups: dict[tuple[bool, ...], list[int]] = {}
    for i, row in enumerate(visibility.tolist()):
        groups.setdefault(tuple(row), []).append(i)
    return [(torch.tensor(key, dtype=torch.bool), frames) for key, frames in groups.items()]
