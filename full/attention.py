r"""Attention processors that make diffusers' Wan DiT causal, per-frame and cacheable.

diffusers' ``WanTransformerBlock`` calls ``attn1(x, None, None, rotary_emb)`` (self-attention) and
``attn2(x, encoder_hidden_states, None, None)`` (cross-attention) and does nothing else with those two
arguments. The processors here accept, in exactly those slots, a small plan object:

* :class:`SelfAttentionInputs` in the ``rotary_emb`` slot — the RoPE table of the query tokens (frame
  positions chosen by the caller: offset by the KV cache, or repeated for teacher forcing), the frame
  visibility as a token mask (or FlexAttention ``BlockMask``), this layer's cached K/V and, in a cache
  pass, where to leave the new K/V;
* :class:`CrossAttentionInputs` in the ``encoder_hidden_states`` slot — the projected prompt and, when
  precomputed once per prompt (:class:`full.cache.TextContext`), this layer's cross-attention K/V.

Both carry ``fold``: with per-frame timesteps the model folds the frames into the batch dimension,
``[B, F·T, D] → [B·F, T, D]`` (a free view), so that the stock block's per-sample modulation
``norm(x)·(1+scale)+shift`` becomes per-frame without materialising a per-token timestep embedding. The
processors unfold the queries back to ``[B, F·T, H, Dh]`` (again a view) before attending across frames.

Given a plain tuple / tensor in those slots the processors behave exactly like diffusers'
``WanAttnProcessor``, so the stock ``forward`` (bidirectional) still works with them installed.

Kernels (:class:`MaskKernel`) for the full-sequence masked modes: ``SDPA`` with a boolean token mask
(any device; the reference), ``FLEX`` with a FlexAttention block mask built from the same frame
visibility (compiled on CUDA; the fast path for training). KV-cached inference needs no mask at all —
a block sees the whole cache and itself — so it runs through diffusers' attention dispatcher (SDPA, or
whichever backend ``model.set_attention_backend`` selected); over a static cache
(:mod:`full.static_cache`) it is SDPA with the cache's key mask, which hides the empty slots.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from diffusers.models.attention_dispatch import dispatch_attention_fn
from einops import rearrange
from torch import Tensor

from cf_ref.masks import token_mask
from full.cache import LayerKV
from full.fused_qkv import fused_path, normed_rotary, project_into
from full.static_cache import StaticLayerKV

if TYPE_CHECKING:
    from diffusers.models.transformers.transformer_wan import WanAttention
    from torch.nn.attention.flex_attention import BlockMask


class MaskKernel(enum.Enum):
    """How a masked (block-causal / teacher-forcing) full-sequence attention is computed."""

    AUTO = "auto"  # FLEX on CUDA, SDPA elsewhere
    SDPA = "sdpa"  # boolean [L, L] token mask; reference, any device
    FLEX = "flex"  # FlexAttention BlockMask from the frame visibility; compiled on CUDA


@dataclass(frozen=True)
class SelfAttentionInputs:
    r"""What one layer's self-attention processor needs for one forward pass.

    rotary: ``(cos, sin)``, each ``[1, L, 1, Dh]``, for the ``L = F·T`` query tokens (unfolded order);
    fold: frames folded into the batch dimension (1 = none); mask: ``[L, L]`` bool (True = attend), a
    ``BlockMask`` or None (every key visible); cached: this layer's cached ``(key, value)``
    ``[B, N, H, Dh]`` to prepend (KV-cached inference), or its :class:`~full.static_cache.StaticLayerKV`
    (fixed-shape buffers and key mask of a static cache); sink: where a KV-cached pass leaves this layer's new
    K/V (with their autograd graph) for the cache to append after a cache pass; polar: ``rotary`` as
    :func:`full.fused_qkv.polar_table` ``[1, L, 1, Dh/2]`` (complex), which selects the fused eager q/k path.

    Everything layer-specific is passed in (no layer index inside the processor), so one compiled block
    graph serves every layer (``compile_repeated_blocks``).
    """

    rotary: tuple[Tensor, Tensor]
    fold: int = 1
    mask: Tensor | BlockMask | None = None
    cached: tuple[Tensor, Tensor] | StaticLayerKV | None = None
    sink: LayerKV | None = None
    polar: Tensor | None = None


@dataclass(frozen=True)
class CrossAttentionInputs:
    """One layer's prompt for the cross-attention processor: the projected text ``[B, L, D]`` and, if
    precomputed once per prompt, this layer's ``(key, value)`` ``[B, L, H, Dh]``; fold as above."""

    hidden: Tensor
    kv: tuple[Tensor, Tensor] | None = None
    fold: int = 1


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    r"""Wan's RoPE on interleaved pairs: :math:`(x_1, x_2) \mapsto (x_1c - x_2s,\ x_1s + x_2c)`.

    x: ``[B, L, H, Dh]``; cos, sin: ``[1, L, 1, Dh]`` (each frequency repeated twice). Same arithmetic
    as diffusers' ``WanAttnProcessor``.
    """
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * c - x2 * s
    out[..., 1::2] = x1 * s + x2 * c
    return out.type_as(x)


def _unfold(x: Tensor, fold: int) -> Tensor:
    """``[B·F, T, ...] → [B, F·T, ...]`` (a view: frames are contiguous in both layouts)."""
    return x if fold == 1 else rearrange(x, "(b f) t ... -> b (f t) ...", f=fold)


def _fold(x: Tensor, fold: int) -> Tensor:
    """``[B, F·T, ...] → [B·F, T, ...]``."""
    return x if fold == 1 else rearrange(x, "b (f t) ... -> (b f) t ...", f=fold)


def _heads(attn: WanAttention, x: Tensor) -> Tensor:
    return x.unflatten(2, (attn.heads, -1))


def self_attention_qkv(attn: WanAttention, hidden: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v ``[B, L, H, Dh]`` of a self-attention layer (after ``norm_q``/``norm_k``, before RoPE)."""
    if getattr(attn, "fused_projections", False):
        q, k, v = attn.to_qkv(hidden).chunk(3, dim=-1)
    else:
        q, k, v = attn.to_q(hidden), attn.to_k(hidden), attn.to_v(hidden)
    return _heads(attn, attn.norm_q(q)), _heads(attn, attn.norm_k(k)), _heads(attn, v)


def cross_attention_kv(attn: WanAttention, text: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-attention k, v ``[B, L, H, Dh]`` of projected text ``[B, L, D]`` (after ``norm_k``)."""
    if getattr(attn, "fused_projections", False):
        k, v = attn.to_kv(text).chunk(2, dim=-1)
    else:
        k, v = attn.to_k(text), attn.to_v(text)
    return _heads(attn, attn.norm_k(k)), _heads(attn, v)


@functools.cache
def _compiled_flex() -> Any:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def masked_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | BlockMask) -> Tensor:
    """Attention of ``q [B, Lq, H, Dh]`` over ``k, v [B, Lk, H, Dh]`` under a bool mask or a ``BlockMask``."""
    qh, kh, vh = (rearrange(t, "b l h d -> b h l d") for t in (q, k, v))
    if isinstance(mask, Tensor):
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask)
    else:
        from torch.nn.attention.flex_attention import flex_attention

        fn = _compiled_flex() if q.is_cuda else flex_attention
        out = fn(qh, kh, vh, block_mask=mask)
    return rearrange(out, "b h l d -> b l h d")


class CausalWanSelfAttnProcessor:
    """Self-attention with frame masks, a KV-cache prefix and caller-chosen RoPE frame positions."""

    _attention_backend = None
    _parallel_config = None

    def __call__(
        self,
        attn: WanAttention,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | None = None,
        attention_mask: Tensor | None = None,
        rotary_emb: SelfAttentionInputs | tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("CausalWanSelfAttnProcessor is a self-attention processor; masks come in the plan")
        plan = rotary_emb if isinstance(rotary_emb, SelfAttentionInputs) else SelfAttentionInputs(rotary_emb)
        written = (False, False)  # new K/V already in a static cache's scratch
        if plan.rotary is not None and fused_path(plan.polar, hidden_states):
            q, k, v, written = self._fused_qkv(attn, hidden_states, plan)
        else:
            q, k, v = (_unfold(t, plan.fold) for t in self_attention_qkv(attn, hidden_states))  # [B, L, H, Dh]
            if plan.rotary is not None:
                q, k = apply_rotary(q, *plan.rotary), apply_rotary(k, *plan.rotary)
        if plan.sink is not None:  # kept with its graph: the cache detaches what it stores, a leak option needs it
            plan.sink.key, plan.sink.value = k, v
        keys, values, mask = k, v, plan.mask
        if isinstance(plan.cached, StaticLayerKV):  # fixed shapes: the new K/V fill the scratch, a key mask
            keys, values = plan.cached.keys_values(k, v, written)
            mask = plan.cached.mask
        elif plan.cached is not None:
            keys, values = torch.cat([plan.cached[0], k], dim=1), torch.cat([plan.cached[1], v], dim=1)
        if mask is not None:
            out = masked_attention(q, keys, values, mask)
        else:
            out = dispatch_attention_fn(q, keys, values, backend=self._attention_backend)
        out = _fold(out.flatten(2, 3).type_as(q), plan.fold)
        return attn.to_out[1](attn.to_out[0](out))

    @staticmethod
    def _fused_qkv(attn: WanAttention, hidden: Tensor, plan: SelfAttentionInputs) -> tuple[Tensor, ...]:
        """q, k, v ``[B, L, H, Dh]`` after norms and RoPE by :mod:`full.fused_qkv`, and whether k / v were written
        straight into a static cache's scratch (no-grad passes over one)."""
        if getattr(attn, "fused_projections", False):
            q, k, v = attn.to_qkv(hidden).chunk(3, dim=-1)
        else:
            q, k, v = attn.to_q(hidden), attn.to_k(hidden), None
        scratch = plan.cached.scratch() if isinstance(plan.cached, StaticLayerKV) else None
        unfold = functools.partial(_unfold, fold=plan.fold)
        q = normed_rotary(attn.norm_q, q, attn.heads, plan.polar, unfold)
        k = normed_rotary(attn.norm_k, k, attn.heads, plan.polar, unfold, None if scratch is None else scratch[0])
        if v is None and scratch is not None and project_into(attn.to_v, hidden, scratch[1]):
            return q, k, scratch[1], (True, True)
        v = _unfold(_heads(attn, attn.to_v(hidden) if v is None else v), plan.fold)
        return q, k, v, (scratch is not None, False)


class CausalWanCrossAttnProcessor:
    """Text cross-attention; reuses K/V precomputed once per prompt when given them."""

    _attention_backend = None
    _parallel_config = None

    def __call__(
        self,
        attn: WanAttention,
        hidden_states: Tensor,
        encoder_hidden_states: CrossAttentionInputs | Tensor | None = None,
        attention_mask: Tensor | None = None,
        rotary_emb: Any = None,
    ) -> Tensor:
        if attn.add_k_proj is not None:
            raise ValueError("the causal Wan model supports text-only cross-attention (no image K/V projections)")
        if not isinstance(encoder_hidden_states, CrossAttentionInputs):
            encoder_hidden_states = CrossAttentionInputs(encoder_hidden_states)
        prompt = encoder_hidden_states
        k, v = prompt.kv if prompt.kv is not None else cross_attention_kv(attn, prompt.hidden)
        q = _unfold(_heads(attn, attn.norm_q(attn.to_q(hidden_states))), prompt.fold)
        out = dispatch_attention_fn(q, k, v, attn_mask=attention_mask, backend=self._attention_backend)
        out = _fold(out.flatten(2, 3).type_as(q), prompt.fold)
        return attn.to_out[1](attn.to_out[0](out))


def resolve_kernel(kernel: MaskKernel, device: torch.device) -> MaskKernel:
    """``AUTO`` → ``FLEX`` on CUDA, ``SDPA`` elsewhere."""
    if kernel is MaskKernel.AUTO:
        return MaskKernel.FLEX if device.type == "cuda" else MaskKernel.SDPA
    return kernel


def build_mask(
    visibility: Tensor, tokens_per_frame: int, kernel: MaskKernel, device: torch.device
) -> Tensor | BlockMask:
    r"""The attention mask of a frame visibility ``[Fq, Fk]`` for ``T`` tokens per frame.

    ``SDPA``: :func:`cf_ref.masks.token_mask` ``[Fq·T, Fk·T]`` bool. ``FLEX``: a ``BlockMask`` whose
    ``mask_mod(q, k) = visibility[q // T, k // T]`` — the same matrix, never materialised.
    """
    kernel = resolve_kernel(kernel, device)
    if kernel is MaskKernel.SDPA:
        return token_mask(visibility, tokens_per_frame).to(device)
    from torch.nn.attention.flex_attention import create_block_mask

    vis = visibility.to(device)
    t = tokens_per_frame

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return vis[q_idx // t, kv_idx // t]

    fq, fk = visibility.shape
    return create_block_mask(mask_mod, B=None, H=None, Q_LEN=fq * t, KV_LEN=fk * t, device=device)
