r"""How a stage calls the DiT: velocity fields and the KV-cache adapter, always through the model's runner.

Velocity fields follow :data:`cf_ref.solvers.VelocityField`, ``field(x [B, F, C, H, W], sigma) -> v``, with the
text, the attention mode and (teacher forcing) the clean context closed over — exactly what ``cf_ref.losses`` /
``cf_ref.distill`` / ``cf_ref.solvers`` take. Every call goes through the model's
:class:`~full.distributed.Runner`, so DDP and FSDP2 see it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cf_ref.masks import AttentionMode
from cf_ref.rollout import CacheGradient
from cf_ref.solvers import VelocityField, guided
from full.blockwise import CausalWanBlockwise
from full.cache_gradient import ExitGradientBlockwise
from full.model import CausalWanTransformer3DModel


def velocity_field(
    runner: nn.Module, text: Tensor, mode: AttentionMode, block_size: int, clean: Tensor | None = None
) -> VelocityField:
    r""":math:`v_\theta(x, \sigma \mid \text{text}[, \text{clean}])` through the runner."""

    def field(x: Tensor, sigma: Tensor) -> Tensor:
        return runner(lambda m: m.velocity(x, sigma, text, mode=mode, block_size=block_size, clean=clean))

    return field


def guided_field(
    runner: nn.Module,
    text: Tensor,
    negative: Tensor,
    scale: float,
    mode: AttentionMode,
    block_size: int,
    clean: Tensor | None = None,
) -> VelocityField:
    r"""Classifier-free guidance :math:`v_\varnothing + w(v_c - v_\varnothing)` in one batched call (cond ; uncond)
    (:func:`cf_ref.solvers.guided`); ``scale`` 1 is the conditional field alone.

    text: ``[B, L, D]``; negative: ``[B, L, D]`` (the negative prompt's embedding per sample).
    """
    if scale == 1.0:
        return velocity_field(runner, text, mode, block_size, clean)
    both_text = torch.cat([text, negative])
    both_clean = None if clean is None else torch.cat([clean, clean])
    return guided(velocity_field(runner, both_text, mode, block_size, both_clean), scale)


def kv_blockwise(
    model: CausalWanTransformer3DModel,
    text: Tensor,
    block_size: int,
    cache_gradient: CacheGradient = CacheGradient.NONE,
) -> CausalWanBlockwise:
    """The model's KV-cache adapter (a :class:`cf_ref.rollout.BlockwiseModel`) for ``text [B, L, D]``.

    Unlike ``model.blockwise`` it does not precompute the prompt's cross-attention K/V: each block computes
    them inside its own forward. So every weight is used inside a forward that DDP / FSDP2 see (FSDP2
    gathers a block's weights only there), and a rollout's gradient reaches the text projection and the
    cross-attention weights — as in the published trainer, whose ``gradient_checkpointing: true`` makes every
    grad-enabled call project the prompt's K/V itself (``CausalWanModel._forward_inference`` passes no
    ``crossattn_cache`` to a checkpointed block). ``cache_gradient``: what the commits carry
    (:class:`cf_ref.rollout.CacheGradient`; ``PUBLISHED_LEAK``: :class:`full.cache_gradient.ExitGradientBlockwise`).
    """
    if not isinstance(cache_gradient, CacheGradient):
        raise ValueError(f"cache_gradient must be a CacheGradient member, got {cache_gradient!r}")
    adapter = ExitGradientBlockwise if cache_gradient is CacheGradient.PUBLISHED_LEAK else CausalWanBlockwise
    return adapter(model, model.text_context(text), block_size, None)
