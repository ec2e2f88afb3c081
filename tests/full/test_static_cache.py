"""StaticKVCache: slot bookkeeping against the variable-length caches, fixed shapes and buffers over a rollout, one
compiled graph for every block, gradients equal to the dynamic cache's. (Mode-by-mode output equivalence: the
equivalence tests of test_model / test_sink / test_cache_gradient run over both caches via ``cache_kind``.)"""

from __future__ import annotations

import pytest
import torch

from cf_ref.rollout import few_step_rollout
from cf_ref.schedule import few_step_sigmas
from full.cache import WanKVCache
from full.cache_choice import new_kv_cache
from full.model import CausalWanTransformer3DModel
from full.sink import SinkKVCache
from full.static_cache import StaticKVCache
from full.tiny import transformer_kwargs

SIGMAS = few_step_sigmas((1000, 750, 500, 250), 5.0).float()


def frame(i: int, tokens: int = 2) -> torch.Tensor:
    """One frame's K (or V): ``tokens`` tokens of value ``i`` — [1, tokens, 1, 1]."""
    return torch.full((1, tokens, 1, 1), float(i))


def held_frames(cache) -> list[int]:
    key = cache.get(0)
    return [] if key is None else sorted(int(v) for v in key[0][0, ::2, 0, 0].tolist())


@pytest.mark.parametrize("capacity,sink,block", [(None, 0, 1), (4, 0, 2), (3, 0, 1), (0, 0, 1), (2, 1, 1), (4, 2, 2)])
def test_slots_hold_the_frames_the_variable_length_cache_holds(capacity, sink, block):
    """Appending the same blocks, the static cache's valid slots hold the frames WanKVCache / SinkKVCache hold (as a
    set: the ring stores them in another order) and the key mask shows exactly the valid slots and the scratch."""
    ref = (
        SinkKVCache(1, 2, capacity_frames=capacity, sink_frames=sink)
        if sink
        else WanKVCache(1, 2, capacity_frames=capacity)
    )
    static = StaticKVCache(1, 2, capacity_frames=capacity, max_frames=12, sink_frames=sink)
    static.layer(0, torch.empty(1, 0, 1, 1), block)  # allocate: batch 1, 1 head, head dim 1
    for start in range(0, 12, block):
        kv = torch.cat([frame(i) for i in range(start, start + block)], dim=1)
        for cache in (ref, static):
            cache.append(0, kv, -kv)
            cache.advance(block)
        assert held_frames(static) == held_frames(ref)
        assert static.cached_frames == ref.cached_frames and static.num_frames == ref.num_frames
        expected = [True] * static.cached_frames + [False] * (static.slots - static.cached_frames) + [True] * block
        assert static.mask[0, 0, 0, ::2].tolist() == expected
    static.reset()
    assert static.cached_frames == 0 and static.get(0) is None and static.mask[0, 0, 0, : 2 * static.slots].sum() == 0


@torch.no_grad()
def test_a_rollout_keeps_every_shape_and_buffer(model, latents, text):
    """Over a whole KV-cached rollout (rolling window, ring wrapping) the buffers are the ones allocated by the first
    pass — same storage, same shapes — and every attention call sees keys of one length."""
    bw = model.blockwise(text, 1, window=3)
    cache = bw.new_cache("static")
    lengths: set[int] = set()
    # WanTransformerBlock calls attn1(x, None, None, plan): the plan's cached view is what the layer attends over
    hook = model.blocks[0].attn1.register_forward_pre_hook(lambda mod, args: lengths.add(args[3].cached.key.shape[1]))
    try:
        few_step_rollout(bw, latents[:, :1], 1, SIGMAS, cache)
        pointers = [(k.data_ptr(), v.data_ptr()) for k, v in cache.buffers]
        cache.rebase()
        few_step_rollout(bw, latents[:, 1:], 1, SIGMAS, cache)
    finally:
        hook.remove()
    assert [(k.data_ptr(), v.data_ptr()) for k, v in cache.buffers] == pointers
    assert lengths == {(2 + 1) * 16}  # (w-1)·b slots + a block's scratch, 16 tokens a frame
    assert cache.num_frames == 6 and cache.cached_frames == 2


@torch.no_grad()
@pytest.mark.parametrize("kind,new_graphs_after_block_0", [("static", False), ("dynamic", True)])
def test_one_compiled_graph_serves_every_block(latents, text, kind, new_graphs_after_block_0):
    """``compile_repeated_blocks(fullgraph=True)`` over a frame-wise rollout of 6 blocks (4 steps + a cache pass each):
    with the static cache Dynamo compiles nothing after the first block; the dynamic cache's growing prefix does make
    it compile again (the check can fail). Backend ``aot_eager``: the guards and recompilations are Dynamo's
    whatever the backend, and it needs no C++ compiler."""
    from torch._dynamo.utils import counters

    model = CausalWanTransformer3DModel(**transformer_kwargs()).eval()
    bw = model.blockwise(text, 1)
    cache = bw.new_cache(kind, max_frames=6)
    torch._dynamo.reset()
    counters.clear()
    model.compile_repeated_blocks(fullgraph=True, backend="aot_eager")
    try:
        graphs = []
        for j in range(6):
            few_step_rollout(bw, latents[:, j : j + 1], 1, SIGMAS, cache)
            cache.rebase()
            graphs.append(counters["stats"]["unique_graphs"])
    finally:
        torch._dynamo.reset()
    assert graphs[0] >= 1
    assert (graphs[-1] > graphs[0]) == new_graphs_after_block_0, graphs


def test_training_rollout_gradients_equal_the_dynamic_cache(latents, text):
    """The self-forcing rollout (exit steps, context noise, a rolling window) back-propagates the same gradients into
    the weights through either cache."""
    model = CausalWanTransformer3DModel(**transformer_kwargs()).double().train()
    x, txt = latents.double(), text.double()

    def grads(kind: str) -> torch.Tensor:
        model.zero_grad()
        bw = model.blockwise(txt, 1, window=3)
        g = torch.Generator().manual_seed(5)
        out = few_step_rollout(bw, x, 1, SIGMAS.double(), bw.new_cache(kind), [1, 3, 0, 2, 1, 0], 0.1, g)
        out.x0.square().mean().backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    dynamic = grads("dynamic")
    assert dynamic.abs().sum() > 0
    torch.testing.assert_close(grads("static"), dynamic, rtol=1e-9, atol=1e-12)


def test_bad_uses_are_clear_errors(model, latents, text):
    with pytest.raises(ValueError, match="max_frames"):
        StaticKVCache(2)
    with pytest.raises(ValueError, match="cache must be one of"):
        new_kv_cache("paged", 2, 3, None)
    with pytest.raises(ValueError, match="sink_frames"):
        StaticKVCache(2, capacity_frames=2, sink_frames=-1)
    bw = model.blockwise(text, 3)
    cache = bw.new_cache("static", max_frames=3)
    with torch.no_grad():
        bw.commit(latents[:, :3], torch.zeros(2, 3), 0, cache)
        with pytest.raises(ValueError, match="holds 3 frames"):
            bw.velocity(latents[:, 3:], torch.zeros(2, 3), 1, cache)
        cache = bw.commit(latents[:, :3], torch.zeros(2, 3), 0, bw.new_cache("static", max_frames=6))
        with pytest.raises(ValueError, match="passes of 3 frames"):
            model.blockwise(text, 1).velocity(latents[:, :1], torch.ones(2, 1), 3, cache)
    with pytest.raises(RuntimeError, match="after a pass"):
        StaticKVCache(1, 2, max_frames=2).append(0, frame(0), frame(0))
