"""full.graphs: the CUDA-graph blockwise model's static-buffer plumbing equals eager passes (CPU: the passes re-run on
the static buffers instead of a captured graph), regional compilation equals eager over a static cache, and a CUDA
graph off CUDA is a clear error. The capture itself needs a GPU (benchmarks/gpu_suite.sh)."""

from __future__ import annotations

import pytest
import torch

from cf_ref.rollout import few_step_rollout
from cf_ref.schedule import few_step_sigmas
from full.graphs import GraphedBlockwise, compile_blocks
from full.model import CausalWanTransformer3DModel
from full.tiny import transformer_kwargs

SIGMAS = few_step_sigmas((1000, 750, 500, 250), 5.0).float()


def seeded() -> torch.Generator:
    """The re-noising generator of a rollout (same seed: same noise)."""
    return torch.Generator().manual_seed(2)


@torch.no_grad()
@pytest.mark.parametrize("block,window", [(1, 3), (3, None)])
def test_graph_plumbing_equals_eager_rollout(model, latents, text, block, window):
    """Static inputs copied in, outputs copied out, the cache written after the cache pass: a rollout block by block
    (a rolling window that wraps the ring, and the whole history) equals the eager rollout on a static cache."""
    bw = model.blockwise(text, block, window)
    graphed = GraphedBlockwise(bw, capture=False)
    caches = bw.new_cache("static", 6), graphed.new_cache("static", 6)
    outs = []
    for blockwise, cache in zip((bw, graphed), caches):
        outs.append(
            few_step_rollout(blockwise, latents, block, SIGMAS, cache, context_noise=0.1, generator=seeded()).x0
        )
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-6)
    assert len(graphed.graphs) == 2  # one denoising graph and one cache-pass graph served every block
    assert caches[1].num_frames == caches[0].num_frames == 6


@torch.no_grad()
def test_compiled_blocks_equal_eager_over_a_static_cache(latents, text):
    """``compile_blocks`` (what ``--compile`` does) gives the eager rollout's output. Backend ``aot_eager`` (Dynamo's
    capture and guards, no C++ compiler needed)."""
    model = CausalWanTransformer3DModel(**transformer_kwargs()).eval()
    bw = model.blockwise(text, 3)
    eager = few_step_rollout(bw, latents, 3, SIGMAS, bw.new_cache("static", 6), generator=seeded()).x0
    compile_blocks(model, backend="aot_eager")
    try:
        compiled = few_step_rollout(bw, latents, 3, SIGMAS, bw.new_cache("static", 6), generator=seeded()).x0
        assert model._cf_blocks_compiled
    finally:
        torch._dynamo.reset()
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-5)


def test_bad_uses_are_clear_errors(model, latents, text):
    bw = model.blockwise(text, 3)
    with pytest.raises(ValueError, match="CUDA device"):
        GraphedBlockwise(bw, capture=True)
    graphed = GraphedBlockwise(bw)  # CPU: no capture
    assert not graphed.capture
    with pytest.raises(ValueError, match="static KV cache"):
        graphed.new_cache("dynamic")
    with pytest.raises(TypeError, match="StaticKVCache"):
        graphed.velocity(latents[:, :3], torch.ones(2, 3), 0, bw.new_cache())
