"""The KV cache's bookkeeping: append, rolling eviction, frame counting, consistency checks."""

from __future__ import annotations

import pytest
import torch

from full.cache import WanKVCache


def kv(frames: int, tokens: int = 4, fill: float = 0.0) -> torch.Tensor:
    return torch.full((1, frames * tokens, 2, 3), fill)


def test_append_update_and_rolling_eviction():
    cache = WanKVCache(num_layers=2, tokens_per_frame=4, capacity_frames=3)
    assert cache.get(0) is None and cache.cached_frames == 0
    for step in range(4):  # 2 frames a block, values = block index
        held = cache.cached_frames
        assert held == min(2 * step, 3)
        for layer in range(2):
            keys, _ = cache.update(layer, kv(2, fill=step), kv(2, fill=step))
            assert keys.shape[1] == 4 * (held + 2)
            cache.append(layer, kv(2, fill=step), kv(2, fill=-step))
        cache.advance(2)
    assert cache.num_frames == 8 and cache.cached_frames == 3
    keys, values = cache.get(1)
    assert keys[0, :, 0, 0].tolist() == [2.0] * 4 + [3.0] * 8  # the last 3 frames: one of block 2, two of block 3
    assert values[0, -1, 0, 0] == -3.0
    cache.rebase()
    assert cache.origin == 8
    cache.reset()
    assert cache.num_frames == cache.origin == cache.cached_frames == 0


def test_consistency_checks():
    cache = WanKVCache(num_layers=2, capacity_frames=0)
    with pytest.raises(RuntimeError, match="bind"):
        cache.append(0, kv(1), kv(1))
    cache.bind(4)
    with pytest.raises(ValueError, match="this block has 5 per frame"):
        cache.bind(5)
    with pytest.raises(ValueError, match="whole number"):
        cache.append(0, kv(1)[:, :3], kv(1)[:, :3])
    cache.append(0, kv(1), kv(1))
    assert cache.get(0)[0].shape[1] == 0  # capacity 0: a window of one block keeps nothing
    with pytest.raises(RuntimeError, match="different lengths"):
        _half_written()
    with pytest.raises(ValueError, match="batch"):
        full = WanKVCache(num_layers=1, tokens_per_frame=4)
        full.append(0, kv(1), kv(1))
        full.update(0, torch.zeros(2, 4, 2, 3), torch.zeros(2, 4, 2, 3))


def _half_written():
    cache = WanKVCache(num_layers=2, tokens_per_frame=4)
    cache.append(0, kv(1), kv(1))
    cache.advance(1)


def test_append_detaches_unless_asked_to_keep_the_graph():
    """The default stores constants; ``detach=False`` (the published-leak option) keeps the values' graph through
    the concatenation and the rolling eviction."""
    cache = WanKVCache(num_layers=1, tokens_per_frame=4, capacity_frames=3)
    w = torch.tensor(2.0, requires_grad=True)
    cache.append(0, kv(2) * w, kv(2) * w)
    assert not cache.get(0)[0].requires_grad
    cache.append(0, kv(2, fill=1.0) * w, kv(2, fill=1.0) * w, detach=False)
    key, value = cache.get(0)
    assert key.shape[1] == 3 * 4 and key.requires_grad and value.requires_grad
    (grad,) = torch.autograd.grad(key.sum(), w)  # 2 kept frames of the graph-carrying block, each 4·2·3 ones
    assert float(grad) == 2 * 4 * 2 * 3


def test_a_commit_under_no_grad_keeps_the_graph_the_cache_carries():
    """A graph-carrying entry (published-leak) survives a later detached append made under ``no_grad`` (how the
    rollout commits), until the rolling window evicts it."""
    cache = WanKVCache(num_layers=1, tokens_per_frame=4, capacity_frames=2)
    w = torch.tensor(2.0, requires_grad=True)
    cache.append(0, kv(1) + w, kv(1) + w, detach=False)
    with torch.no_grad():
        cache.append(0, kv(1), kv(1))
    key, _ = cache.get(0)
    (grad,) = torch.autograd.grad(key.sum(), w)
    assert float(grad) == 4 * 2 * 3  # the first frame's 4 tokens · 2 heads · 3 dims
    with torch.no_grad():
        cache.append(0, kv(1), kv(1))
    (grad,) = torch.autograd.grad(cache.get(0)[0].sum(), w, allow_unused=True)
    assert grad is None or float(grad) == 0.0  # evicted
