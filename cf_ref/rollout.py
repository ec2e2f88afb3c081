r"""Autoregressive generation block by block, for any causal model with a cache.

A :class:`BlockwiseModel` denoises one block of ``b`` frames given a *cache* of the blocks already
committed (the toy keeps the clean frames; the video DiT keeps per-layer K/V). Two rollouts use it:

* :func:`ar_ode_sample` — multi-step AR sampling: integrate each block's PF-ODE
  :math:`dx/d\sigma = v_\theta(x, \sigma \mid \text{cache})` on a σ grid, then commit the clean block.
  This is how an AR diffusion teacher samples.
* :func:`few_step_rollout` — the few-step student's sampler (Self Forcing / CausVid inference): for
  each block, for σ_k in the few-step list: :math:`\hat x_0 = x - \sigma_k v_\theta(x,\sigma_k)`, then
  re-noise :math:`x \leftarrow (1-\sigma_{k+1})\hat x_0 + \sigma_{k+1}\varepsilon'` with fresh noise.
  With ``exit_steps`` it is the *self-forcing training rollout*: block j stops at step ``exit_steps[j]``
  and only that denoising call carries gradient (stochastic gradient truncation).

After a block is finished, ``commit`` runs the model once more on the clean block (at σ = 0, or at a
small ``context_noise`` level) to write it into the cache.

**What gradient the cache carries** (:class:`CacheGradient`). The method's rollout commits without gradient: the
committed values are constants, so a later block's loss sends nothing into an earlier block's calls. The
authors' code (thu-ml/Causal-Forcing ``wan/modules/causal_model.py``, ``CausalWanSelfAttention.forward``) writes
every call's K/V into a preallocated cache *in place*; the exit call writes gradient-carrying K/V, and the cache pass
that follows (under ``no_grad``) overwrites the values but not the autograd history. A later block that reads
those entries therefore sends its gradient into the earlier block's exit call, as if it had attended to the exit
call's (noisy) K/V, while its forward saw the clean ones. :func:`with_exit_gradient` builds exactly that
straight-through value for a cache that keeps its entries functionally (a KV-cache adapter uses it in
``commit`` when asked for ``PUBLISHED_LEAK``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from cf_ref.schedule import interpolate, x0_from_velocity
from cf_ref.solvers import Method, integrate


class CacheGradient(enum.Enum):
    """What gradient a block's committed cache entries carry (see module doc)."""

    NONE = "none"  # constants: the committed values carry no gradient (the method)
    PUBLISHED_LEAK = "published-leak"  # clean values, the exit call's gradient (the authors' in-place cache)


def with_exit_gradient(committed: Tensor, exit_value: Tensor) -> Tensor:
    r"""The value of ``committed`` with the gradient of ``exit_value``:

    .. math::  c = \mathrm{sg}(c_{\text{commit}}) + \bigl(e - \mathrm{sg}(e)\bigr), \qquad
               c = c_{\text{commit}}, \quad \partial c / \partial e = I,

    what an in-place write of ``exit_value`` followed by an overwrite with ``committed`` under ``no_grad`` leaves
    behind (the authors' cache entries, :class:`CacheGradient`). Same shapes (e.g. K/V ``[B, N, H, Dh]``); the
    forward value is ``committed`` exactly. Computed with grad enabled even inside a ``no_grad`` commit.
    """
    if committed.shape != exit_value.shape:
        raise ValueError(f"committed {tuple(committed.shape)} and exit {tuple(exit_value.shape)} shapes differ")
    with torch.enable_grad():
        return committed.detach() + (exit_value - exit_value.detach())


class BlockwiseModel(Protocol):
    """A causal generator that works block by block with a cache of committed blocks."""

    def velocity(self, x: Tensor, sigma: Tensor, block: int, cache: Any) -> Tensor:
        """Velocity for block ``block``: x ``[B, b, *S]``, sigma ``[B, b]``; reads (never writes) the cache."""
        ...

    def commit(self, x: Tensor, sigma: Tensor, block: int, cache: Any) -> Any:
        """Write finished block ``block`` (x ``[B, b, *S]`` at level sigma ``[B, b]``) into the cache; return it."""
        ...


@dataclass(frozen=True)
class Rollout:
    """x0: ``[B, F, *S]`` generated clean frames; states: ``[B, K, F, *S]`` kept ODE states or None;
    exit_steps: per block, the denoising step whose output was kept."""

    x0: Tensor
    states: Tensor | None = None
    exit_steps: tuple[int, ...] = ()


def _blocks(noise: Tensor, block_size: int) -> int:
    if noise.ndim < 2:
        raise ValueError(f"noise must be [B, F, *S], got shape {tuple(noise.shape)}")
    f = noise.shape[1]
    if block_size < 1 or f % block_size:
        raise ValueError(f"block size {block_size} does not divide the number of frames {f}")
    return f // block_size


def _levels(x: Tensor, sigma: Tensor | float) -> Tensor:
    """Constant level ``[B, b]`` for a block ``x: [B, b, *S]``, in float32 at least (a bf16 level would round
    the timestep: 0.8333 → 0.832)."""
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    return torch.full(x.shape[:2], float(sigma), device=x.device, dtype=dtype)


def ar_ode_sample(
    model: BlockwiseModel,
    noise: Tensor,
    block_size: int,
    grid: Tensor,
    cache: Any,
    method: Method = Method.EULER,
    keep_at: Sequence[float] | Tensor | None = None,
    commit_sigma: float = 0.0,
) -> Rollout:
    r"""Sample block by block with the PF-ODE of a causal diffusion model.

    noise: ``[B, F, *S]`` (ε, the state at ``grid[0] = 1``); grid: ``[N+1]`` decreasing σ's.
    Block j integrates :math:`dx/d\sigma = v(x,\sigma \mid \text{blocks} < j)` from its noise to σ = 0,
    then is committed at ``commit_sigma`` (0 = clean). Returns the clean frames and, with ``keep_at``,
    the states at those σ's ``[B, K, F, *S]``.
    """
    num_blocks = _blocks(noise, block_size)
    ends, kept = [], []
    for j in range(num_blocks):
        eps = noise[:, j * block_size : (j + 1) * block_size]

        def field(x: Tensor, sigma: Tensor, j: int = j, cache: Any = cache) -> Tensor:
            return model.velocity(x, _levels(x, sigma), j, cache)

        traj = integrate(field, eps, grid, method, keep_at=keep_at)
        ends.append(traj.end)
        kept.append(traj.states)
        clean = traj.end if commit_sigma == 0 else interpolate(traj.end, torch.randn_like(traj.end), commit_sigma)
        cache = model.commit(clean, _levels(clean, commit_sigma), j, cache)
    states = torch.cat(kept, dim=2) if keep_at is not None else None
    return Rollout(x0=torch.cat(ends, dim=1), states=states)


def few_step_rollout(
    model: BlockwiseModel,
    noise: Tensor,
    block_size: int,
    sigmas: Tensor,
    cache: Any,
    exit_steps: Sequence[int] | None = None,
    context_noise: float = 0.0,
    generator: torch.Generator | None = None,
    first_sigmas: Tensor | None = None,
) -> Rollout:
    r"""Few-step AR sampling / self-forcing rollout (see module doc).

    noise: ``[B, F, *S]``; sigmas: ``[K]`` the few-step list (decreasing, ``sigmas[0]`` usually 1);
    ``first_sigmas`` ``[K_0]``: block 0's own list (Causal Forcing++'s 1-/2-step students denoise the first
    block on the 4-step list; the authors' ``denoising_step_list_first_chunk``), default ``sigmas``.
    ``exit_steps=None`` runs all steps without gradient (inference). Otherwise ``exit_steps[j]`` ∈
    [0, K_j) is the step at which block j stops; that single call runs with gradient enabled (if the
    caller has grad enabled) and every other call, re-noising and the cache commit run without.
    ``context_noise`` > 0 commits :math:`(1-\sigma_c)\hat x_0 + \sigma_c\varepsilon` at level σ_c.
    Fresh noise is drawn with ``generator`` on the noise's device. Returns the clean frames ``[B, F, *S]``.
    """
    num_blocks = _blocks(noise, block_size)
    lists = [[float(v) for v in sigmas]] * num_blocks
    if first_sigmas is not None:
        lists[0] = [float(v) for v in first_sigmas]
    if any(len(levels) < 1 for levels in lists):
        raise ValueError("sigmas must hold at least one level")
    exits = [len(levels) - 1 for levels in lists] if exit_steps is None else list(exit_steps)
    if len(exits) != num_blocks or not all(0 <= e < len(levels) for e, levels in zip(exits, lists, strict=False)):
        ranges = ", ".join(sorted({f"[0, {len(levels)})" for levels in lists}))
        raise ValueError(f"exit_steps must give one step in {ranges} per block ({num_blocks} blocks), got {exits}")
    grad_on = exit_steps is not None and torch.is_grad_enabled()

    def fresh(like: Tensor) -> Tensor:
        return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)

    outputs = []
    for j in range(num_blocks):
        x, s = noise[:, j * block_size : (j + 1) * block_size], lists[j]
        for step in range(exits[j] + 1):
            last = step == exits[j]
            with torch.set_grad_enabled(grad_on and last):
                v = model.velocity(x, _levels(x, s[step]), j, cache)
                x0 = x0_from_velocity(x, v, s[step])
            if not last:
                x = interpolate(x0.detach(), fresh(x0), s[step + 1])
        outputs.append(x0)
        with torch.no_grad():
            clean = x0.detach()
            if context_noise > 0:
                clean = interpolate(clean, fresh(clean), context_noise)
            cache = model.commit(clean, _levels(clean, context_noise), j, cache)
    return Rollout(x0=torch.cat(outputs, dim=1), exit_steps=tuple(exits))


def sample_exit_steps(
    num_blocks: int, num_steps: int, same_across_blocks: bool = True, generator: torch.Generator | None = None
) -> list[int]:
    """Random exit steps for the self-forcing rollout, uniform on [0, num_steps): one shared draw (the published
    default) or one per block. Returns ``num_blocks`` ints."""
    if num_blocks < 1 or num_steps < 1:
        raise ValueError(f"need num_blocks >= 1 and num_steps >= 1, got {num_blocks}, {num_steps}")
    n = 1 if same_across_blocks else num_blocks
    draws = torch.randint(0, num_steps, (n,), generator=generator).tolist()
    return draws * num_blocks if same_across_blocks else draws
