r"""A rolling KV cache that keeps its first frames: the attention sink of long streams.

A rolling cache of ``w`` blocks (:class:`full.cache.WanKVCache` with ``capacity_frames = (w-1)·b``) forgets
the start of the video; streaming language and video models (StreamingLLM; LongLive's frame sink) keep the
first tokens as well, because attention mass piles up on them. :class:`SinkKVCache` keeps the first
``sink_frames`` frames it was given *in addition to* the last ``capacity_frames``: block ``i`` sees

.. math::  \{\text{block } 0\} \cup \{\text{blocks } i-w+1 \dots i\}

(block 0 = the first ``sink_frames / b`` blocks). Where the sink sits in RoPE positions (:class:`SinkPositions`):

* ``fixed`` — each key at the position it was written at (``0 … s-1``); the equivalent full-sequence pass is
  block-causal attention with that visibility (tested against one);
* ``adjacent`` — the authors' long-video model (thu-ml/Causal-Forcing ``long_video/``, built on Rolling Forcing:
  ``long_video/wan/modules/causal_model.py``, ``CausalWanSelfAttention.forward``) keeps its first block as an
  *anchor* and RoPE-rotates it on every read to the positions just before the oldest frame the window holds
  (``rope_start_frame = current_start_frame - working_cache_frames - 3``), while the window and the query keep
  their absolute positions. Here the sink's keys are stored rotated for positions ``0 … s-1`` and are turned by
  :math:`\Delta` frames on read, :math:`\Delta = (\text{first window frame}) - s`; RoPE rotations compose,
  :math:`R(\Delta)R(p) = R(p+\Delta)`, and Wan's RoPE rotates the temporal part of each head only
  (:func:`temporal_rotation`), so this equals committing the sink at positions ``Δ … Δ+s-1`` (tested).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from full.cache import WanKVCache


class SinkPositions(enum.Enum):
    """RoPE positions of the sink's keys when the window has moved on (see the module doc)."""

    FIXED = "fixed"  # where they were written (StreamingLLM, LongLive)
    ADJACENT = "adjacent"  # just before the window's oldest frame (the authors' long_video / Rolling Forcing anchor)


def temporal_rotation(rope, delta: int) -> tuple[Tensor, Tensor]:
    r"""The RoPE rotation that moves a key ``delta`` frames later: ``(cos, sin)`` ``[1, 1, 1, Dh]`` for
    :func:`full.attention.apply_rotary` (not imported here: the attention module imports the caches), the temporal part at position ``delta`` and the height/width parts at
    position 0 (the identity). ``rope``: diffusers' ``WanRotaryPosEmbed`` (its float64 tables)."""
    if not 0 <= delta < rope.max_seq_len:
        raise ValueError(f"a shift of {delta} frames is outside the RoPE table (0 … {rope.max_seq_len - 1})")
    split = [rope.t_dim, rope.h_dim, rope.w_dim]

    def row(freqs: Tensor) -> Tensor:
        t, h, w = freqs.split(split, dim=1)
        return torch.cat([t[delta], h[0], w[0]]).view(1, 1, 1, -1)

    return row(rope.freqs_cos), row(rope.freqs_sin)


@dataclass
class SinkKVCache(WanKVCache):
    """:class:`~full.cache.WanKVCache` whose eviction spares the first ``sink_frames`` frames ever appended (written at
    positions ``0 … sink_frames-1``); ``positions`` ADJACENT needs ``rotation(key, delta)``, which turns keys
    ``[B, N, H, Dh]`` by ``delta`` frames (e.g. ``apply_rotary(key, *temporal_rotation(model.rope, delta))``;
    :class:`full.sampler.BlockSampler` builds it)."""

    sink_frames: int = 0
    positions: SinkPositions = SinkPositions.FIXED
    rotation: Callable[[Tensor, int], Tensor] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sink_frames < 0:
            raise ValueError(f"sink_frames must be >= 0, got {self.sink_frames}")
        if self.positions is SinkPositions.ADJACENT and self.rotation is None:
            raise ValueError("adjacent sink positions need the model's rotation (temporal_rotation)")

    def sink_shift(self) -> int:
        """Frames the sink is moved forward on read: ``first window frame − sink_frames`` (0 while nothing was
        evicted, and always 0 with FIXED positions)."""
        if self.positions is SinkPositions.FIXED or self.tokens_per_frame is None:
            return 0
        window = self.cached_frames - min(self.sink_frames, self.cached_frames)
        return max(0, self.num_frames - window - self.sink_frames)

    def get(self, layer: int) -> tuple[Tensor, Tensor] | None:
        """Cached ``(key, value)`` ``[B, N, H, Dh]``; with ADJACENT positions the sink's keys rotated by
        :meth:`sink_shift` frames."""
        kv = super().get(layer)
        delta = self.sink_shift()
        if kv is None or delta == 0:
            return kv
        key, sink = kv[0], self.sink_frames * self.tokens_per_frame
        moved = self.rotation(key[:, :sink], delta)
        return torch.cat([moved, key[:, sink:]], dim=1), kv[1]

    def append(self, layer: int, key: Tensor, value: Tensor, detach: bool = True) -> None:
        """Append like :meth:`WanKVCache.append` (``key``, ``value``: ``[B, n, H, Dh]``; ``detach`` alike), then
        evict down to ``sink + capacity`` frames: ``[sink ; last capacity frames]`` along the tokens."""
        capacity, self.capacity_frames = self.capacity_frames, None
        try:
            super().append(layer, key, value, detach)
        finally:
            self.capacity_frames = capacity
        if capacity is None:
            return
        kv, t = self.layers[layer], self.tokens_per_frame
        sink, keep = self.sink_frames * t, capacity * t
        if kv.key.shape[1] > sink + keep:
            tail = slice(kv.key.shape[1] - keep, None)
            with torch.enable_grad():  # commits run under no_grad: keep the graph the kept frames carry, if any
                kv.key = torch.cat([kv.key[:, :sink], kv.key[:, tail]], dim=1)
                kv.value = torch.cat([kv.value[:, :sink], kv.value[:, tail]], dim=1)
