"""full.blockwise: image prefill and classifier-free guidance over the KV cache against the full-sequence model
and against two separate caches (tiny random weights, CPU, fp32; the rollout equivalences are in test_model.py)."""

from __future__ import annotations

import torch

from cf_ref.masks import AttentionMode
from cf_ref.solvers import classifier_free_guidance
from tests.full.test_model import per_block_sigma

BC = AttentionMode.BLOCK_CAUSAL


@torch.no_grad()
def test_image_prefill_equals_block_causal_with_a_clean_first_frame(model, latents, text, cache_kind):
    sigma = per_block_sigma(2, 6, 1)
    sigma[:, 0] = 0.0
    full = model.velocity(latents, sigma, text, mode=BC, block_size=1)
    bw = model.blockwise(text, 1)
    cache = bw.prefill(latents[:, :1], bw.new_cache(cache_kind, max_frames=6))
    assert (cache.origin, cache.num_frames) == (1, 1)
    for j in range(5):
        span = slice(1 + j, 2 + j)
        v = bw.velocity(latents[:, span], sigma[:, span], j, cache)
        torch.testing.assert_close(v, full[:, span], rtol=0, atol=1e-5)
        cache = bw.commit(latents[:, span], sigma[:, span], j, cache)


@torch.no_grad()
def test_guided_blockwise_is_cfg_of_two_caches(model, latents, text, cache_kind):
    uncond = torch.zeros(1, 5, text.shape[-1])
    sigma = per_block_sigma(2, 6, 3)
    guided = model.guided_blockwise(text, uncond, scale=4.0, block_size=3)
    cond_bw, uncond_bw = model.blockwise(text, 3), model.blockwise(uncond.expand(2, -1, -1), 3)
    caches = guided.new_cache(cache_kind, 6), cond_bw.new_cache(cache_kind, 6), uncond_bw.new_cache(cache_kind, 6)
    for j in range(2):
        span = slice(3 * j, 3 * j + 3)
        x, s = latents[:, span], sigma[:, span]
        v = guided.velocity(x, s, j, caches[0])
        ref = classifier_free_guidance(
            cond_bw.velocity(x, s, j, caches[1]), uncond_bw.velocity(x, s, j, caches[2]), 4.0
        )
        torch.testing.assert_close(v, ref, rtol=0, atol=1e-5)
        guided.commit(x, torch.zeros_like(s), j, caches[0])
        cond_bw.commit(x, torch.zeros_like(s), j, caches[1])
        uncond_bw.commit(x, torch.zeros_like(s), j, caches[2])
