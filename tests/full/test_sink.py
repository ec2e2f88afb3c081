"""SinkKVCache: eviction keeps [sink ; last window], and a KV-cached pass over it equals full-sequence attention
with the sink-plus-window visibility."""

from __future__ import annotations

import pytest
import torch

from cf_ref.masks import block_causal_visibility, token_mask
from cf_ref.schedule import timestep_from_sigma
from full.cache_choice import new_kv_cache
from full.sink import SinkKVCache


def test_eviction_keeps_the_first_frames_and_the_last_capacity():
    cache = SinkKVCache(num_layers=1, tokens_per_frame=2, capacity_frames=2, sink_frames=1)
    frames = [torch.full((1, 2, 1, 1), float(i)) for i in range(6)]  # frame i: two tokens of value i
    held = []
    for f in frames:
        cache.append(0, f, -f)
        cache.advance(1)
        held.append(cache.get(0)[0][0, ::2, 0, 0].tolist())
    assert held == [[0], [0, 1], [0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 5]]
    torch.testing.assert_close(cache.get(0)[1], -cache.get(0)[0])
    assert cache.cached_frames == 3 and cache.num_frames == 6
    with pytest.raises(ValueError, match="sink_frames"):
        SinkKVCache(num_layers=1, sink_frames=-1)


def sink_visibility(frames: int, block: int, window: int) -> torch.Tensor:
    """Block i sees block 0 and blocks i-w+1 … i (block-causal), written independently of the cache."""
    vis = block_causal_visibility(frames, block, window)
    q = torch.arange(frames)[:, None] // block
    k = torch.arange(frames)[None, :] // block
    return vis | ((k == 0) & (k <= q))


@pytest.mark.parametrize("block,window", [(1, 2), (2, 1), (1, 3)])
def test_kv_cached_passes_with_a_sink_equal_one_masked_forward(arch, block, window, cache_kind):
    _, model, latents, text = arch
    sigma = torch.rand(2, latents.shape[1] // block, generator=torch.Generator().manual_seed(4))
    sigma = sigma.repeat_interleave(block, dim=1)
    bw = model.blockwise(text, block, window=window)
    cache = new_kv_cache(cache_kind, len(model.blocks), block, window, sink=True)  # a SinkKVCache when dynamic
    outs = []
    with torch.no_grad():
        for j in range(latents.shape[1] // block):
            span = slice(j * block, (j + 1) * block)
            outs.append(bw.velocity(latents[:, span], sigma[:, span], j, cache))
            bw.commit(latents[:, span], sigma[:, span], j, cache)
        vis = sink_visibility(latents.shape[1], block, window)
        t = timestep_from_sigma(sigma)
        full = model.run(latents, t, model.text_context(text), torch.arange(latents.shape[1]), token_mask(vis, 16))
    torch.testing.assert_close(torch.cat(outs, dim=1), full.float(), rtol=0, atol=1e-5)
    assert cache.cached_frames == block + (window - 1) * block


def test_append_passes_detach_through():
    """As WanKVCache.append: constants by default, the values' graph with ``detach=False`` (published-leak)."""
    cache = SinkKVCache(num_layers=1, tokens_per_frame=2, capacity_frames=1, sink_frames=1)
    w = torch.tensor(3.0, requires_grad=True)
    cache.append(0, torch.ones(1, 2, 1, 1) * w, torch.ones(1, 2, 1, 1) * w)
    assert not cache.get(0)[0].requires_grad
    cache.append(0, torch.ones(1, 2, 1, 1) * w, torch.ones(1, 2, 1, 1) * w, detach=False)
    (grad,) = torch.autograd.grad(cache.get(0)[0].sum(), w)
    assert float(grad) == 2.0  # the sink frame is a constant, the second frame's two tokens carry w


@pytest.mark.parametrize("detach_sink", [False, True])
def test_eviction_under_no_grad_keeps_the_leaked_gradient(detach_sink):
    """Commits run under ``no_grad``: evicting past the window must keep the graph the kept frames carry (the sink's
    and the window's), as WanKVCache's eviction does — the published-leak option's gradient."""
    cache = SinkKVCache(num_layers=1, tokens_per_frame=2, capacity_frames=1, sink_frames=1)
    w = [torch.tensor(float(i + 1), requires_grad=True) for i in range(3)]
    with torch.no_grad():
        for i, wi in enumerate(w):
            with torch.enable_grad():
                key, value = torch.ones(1, 2, 1, 1) * wi, torch.ones(1, 2, 1, 1) * -wi
            cache.append(0, key, value, detach=detach_sink and i == 0)
            cache.advance(1)
    key, value = cache.get(0)
    assert key[0, ::2, 0, 0].tolist() == [1.0, 3.0]  # the sink frame (w0) and the last frame (w2); w1 evicted
    assert key.requires_grad and value.requires_grad
    grads = torch.autograd.grad((key - value).sum(), w, allow_unused=True)
    expected = [0.0 if detach_sink else 4.0, 0.0, 4.0]  # two tokens each, in key and (negated) in value
    assert [0.0 if g is None else float(g) for g in grads] == expected


def test_temporal_rotation_moves_keys_like_rope_at_later_positions(model):
    """R(Δ)·R(p)·k = R(p+Δ)·k, with R(p) the model's own RoPE table (frames × 4×4 grid)."""
    from full.attention import apply_rotary
    from full.sink import temporal_rotation

    heads, dim = model.config.num_attention_heads, model.config.attention_head_dim
    raw = torch.randn(1, 3 * 16, heads, dim, generator=torch.Generator().manual_seed(0))
    at = apply_rotary(raw, *model.rotary(torch.arange(3), 8, 8))
    for delta in (0, 1, 7, 40):
        moved = apply_rotary(at, *temporal_rotation(model.rope, delta))
        torch.testing.assert_close(moved, apply_rotary(raw, *model.rotary(torch.arange(3) + delta, 8, 8)))
    with pytest.raises(ValueError, match="outside the RoPE table"):
        temporal_rotation(model.rope, model.rope.max_seq_len)


@pytest.mark.parametrize("block,window,shifts", [(1, 2, [0, 0, 0, 1, 2, 3]), (2, 1, [0, 0, 2])])
def test_adjacent_sink_equals_the_sink_committed_just_before_the_window(arch, block, window, shifts):
    """The authors' long-video anchor: each block sees the sink as if it had been committed at the positions just
    before the window's oldest frame. Reference: a plain cache holding [the sink block committed at those
    positions ; the window's K/V], queried at the block's absolute positions."""
    from full.attention import apply_rotary
    from full.cache import WanKVCache
    from full.sink import SinkPositions, temporal_rotation

    _, model, latents, text = arch
    frames = latents.shape[1]
    sigma = torch.rand(2, frames // block, generator=torch.Generator().manual_seed(5)).repeat_interleave(block, dim=1)
    bw = model.blockwise(text, block, window=window)

    def rotation(key, delta):
        return apply_rotary(key, *temporal_rotation(model.rope, delta))

    cache = SinkKVCache(len(model.blocks), None, (window - 1) * block, sink_frames=block,
                        positions=SinkPositions.ADJACENT, rotation=rotation)  # fmt: skip
    seen = []
    with torch.no_grad():
        for j in range(frames // block):
            span = slice(j * block, (j + 1) * block)
            out = bw.velocity(latents[:, span], sigma[:, span], j, cache)
            delta = cache.sink_shift()
            seen.append(delta)
            sink_cache = WanKVCache(len(model.blocks))  # unbounded (a window-1 cache would keep nothing)
            sink_cache.num_frames = sink_cache.origin = delta
            bw.commit(latents[:, :block], sigma[:, :block], 0, sink_cache)
            ref = WanKVCache(len(model.blocks), 16, num_frames=j * block)
            for i in range(len(model.blocks)):
                stored = cache.stored(i)
                if stored is not None:
                    sink_kv, t = sink_cache.stored(i), block * 16
                    ref.layers[i].key = torch.cat([sink_kv[0], stored[0][:, t:]], dim=1)
                    ref.layers[i].value = torch.cat([sink_kv[1], stored[1][:, t:]], dim=1)
            expected = bw.velocity(latents[:, span], sigma[:, span], j, ref)
            torch.testing.assert_close(out, expected, rtol=0, atol=2e-5)
            bw.commit(latents[:, span], sigma[:, span], j, cache)
    assert seen == shifts  # the sink moves once the window has evicted frames
