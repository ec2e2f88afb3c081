"""Which KV cache a rollout gets: :func:`new_kv_cache` builds the dynamic (:class:`~full.cache.WanKVCache`, with a
sink :class:`~full.sink.SinkKVCache`) or the static (:class:`~full.static_cache.StaticKVCache`) cache from a
block size, a window and a sink flag — the one place those choices meet."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from full.cache import WanKVCache
from full.sink import SinkKVCache, SinkPositions
from full.static_cache import StaticKVCache


def new_kv_cache(
    kind: str,
    num_layers: int,
    block_size: int,
    window: int | None,
    sink: bool = False,
    max_frames: int | None = None,
    sink_positions: str = "fixed",
    rotation: Callable[[Tensor, int], Tensor] | None = None,
) -> WanKVCache:
    """A KV cache for blocks of ``block_size`` frames: ``kind`` ``"dynamic"`` (:class:`~full.cache.WanKVCache`, or
    :class:`~full.sink.SinkKVCache` with ``sink``) or ``"static"`` (:class:`StaticKVCache`; ``max_frames`` bounds
    it without a ``window``). A window of ``w`` blocks keeps ``(w-1)·b`` frames; a sink keeps the first block, at
    its written RoPE positions (``sink_positions="fixed"``) or re-rotated next to the window (``"adjacent"``,
    dynamic cache only; ``rotation(key, Δ)``: keys turned by the temporal RoPE rotation of Δ frames, see
    :mod:`full.sink`)."""
    capacity = None if window is None else (window - 1) * block_size
    sink_frames = block_size if sink else 0
    if kind == "static":
        if sink and sink_positions != "fixed":
            raise ValueError(f"sink positions {sink_positions!r} need the dynamic cache (cache='dynamic')")
        return StaticKVCache(num_layers, capacity_frames=capacity, max_frames=max_frames, sink_frames=sink_frames)
    if kind != "dynamic":
        raise ValueError(f"cache must be one of {CACHE_KINDS}, got {kind!r}")
    if sink:
        return SinkKVCache(
            num_layers,
            capacity_frames=capacity,
            sink_frames=sink_frames,
            positions=SinkPositions(sink_positions),
            rotation=rotation,
        )
    return WanKVCache(num_layers, capacity_frames=capacity)


#: The KV cache kinds :func:`new_kv_cache` builds.
CACHE_KINDS = ("dynamic", "static")
