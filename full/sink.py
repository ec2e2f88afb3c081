r"""A rolling KV cache that keeps its first frames: the attention sink of long streams.

A rolling cache of ``w`` blocks (:class:`full.cache.WanKVCache` with ``capacity_frames = (w-1)·b``) forgets
the start of the video; streaming language and video models (StreamingLLM; LongLive's frame sink) keep the
first tokens as well, because attention mass piles up on them. :class:`SinkKVCache` keeps the first
``sink_frames`` frames it was given *in addition to* the last ``capacity_frames``: block ``i`` sees

.. math::  \{\text{block } 0\} \cup \{\text{blocks } i-w+1 \dots i\}

(block 0 = the first ``sink_frames / b`` blocks), each key at the RoPE position it was written at. The
equivalent full-sequence pass is block-causal attention with that visibility (tested against one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from full.cache import WanKVCache


@dataclass
class SinkKVCache(WanKVCache):
    """:class:`~full.cache.WanKVCache` whose eviction spares the first ``sink_frames`` frames ever appended."""

    sink_frames: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sink_frames < 0:
            raise ValueError(f"sink_frames must be >= 0, got {self.sink_frames}")

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
            kv.key = torch.cat([kv.key[:, :sink], kv.key[:, tail]], dim=1)
            kv.value = torch.cat([kv.value[:, :sink], kv.value[:, tail]], dim=1)
