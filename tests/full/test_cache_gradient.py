"""full.cache_gradient: the authors' leaked cache gradient on the causal DiT — forward unchanged, gradient from later
blocks into an earlier block's exit call zero by default and equal to an independent vector–Jacobian product with
the option, with and without gradient checkpointing."""

from __future__ import annotations

import pytest
import torch

from cf_ref.rollout import CacheGradient, few_step_rollout
from cf_ref.schedule import few_step_sigmas, timestep_from_sigma
from full.blockwise import CausalWanBlockwise
from full.cache import LayerKV
from full.cache_gradient import ExitGradientBlockwise
from full.stages.fields import kv_blockwise
from full.tiny import tiny_transformer

SIGMAS = few_step_sigmas((1000, 750, 500, 250), 5.0)


@pytest.fixture(scope="module")
def model64():
    return tiny_transformer(seed=0).double()


def _later_block_gradient(model, latents, text, exits, cache_gradient, cache_kind="dynamic"):
    """Samples of a 2-block rollout (b = 3) and the gradient of a fixed linear loss on block 1 only with respect to
    the noise of block 0 (block 0's exit call at step 0 sees that noise directly) and to the weights."""
    noise = latents.double().clone().requires_grad_(True)
    w = torch.randn(noise[:, 3:].shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    bw = kv_blockwise(model, text.double(), 3, cache_gradient)
    g = torch.Generator().manual_seed(3)
    out = few_step_rollout(bw, noise, 3, SIGMAS, bw.new_cache(cache_kind, 6), exits, 0.0, g).x0
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad((out[:, 3:] * w).sum(), [noise, *params], allow_unused=True)
    noise_grad = torch.zeros_like(noise) if grads[0] is None else grads[0]
    flat = torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, grads[1:])])
    return out.detach(), noise_grad[:, :3], flat


@pytest.mark.parametrize("exits", [[0, 0], [2, 2]])
def test_forward_is_identical_and_only_the_leak_reaches_an_earlier_exit_call(model64, latents, text, exits, cache_kind):
    none, leak = CacheGradient.NONE, CacheGradient.PUBLISHED_LEAK
    out_none, noise_none, grad_none = _later_block_gradient(model64, latents, text, exits, none, cache_kind)
    out_leak, noise_leak, grad_leak = _later_block_gradient(model64, latents, text, exits, leak, cache_kind)
    assert torch.equal(out_leak, out_none)
    assert torch.count_nonzero(noise_none) == 0
    assert (torch.count_nonzero(noise_leak) > 0) == (exits[0] == 0)
    assert (grad_leak - grad_none).norm() > 1e-4 * grad_none.norm()


@pytest.mark.parametrize("checkpointing", [False, True])
def test_leaked_gradient_is_the_vjp_of_the_exit_calls_kv(model64, latents, text, checkpointing, cache_kind):
    """Independent computation: with block 0 committed as usual, make its cached K/V leaves, take the gradient of
    block 1's loss with respect to them, and pull it back through block 0's exit-call K/V (the K/V its call at
    σ = 1 computes from the noise). The leak's gradient on block 0's noise must equal that product."""
    if checkpointing:
        model64.enable_gradient_checkpointing()
    try:
        _, leak, _ = _later_block_gradient(model64, latents, text, [0, 0], CacheGradient.PUBLISHED_LEAK, cache_kind)
        noise, txt = latents.double(), text.double()
        w = torch.randn(noise[:, 3:].shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
        bw = CausalWanBlockwise(model64, model64.text_context(txt), 3, None)
        one = torch.ones(noise.shape[0], 3, dtype=torch.float64)
        cache = bw.new_cache()
        with torch.no_grad():
            x0 = noise[:, :3] - bw.velocity(noise[:, :3], one, 0, cache)
            bw.commit(x0, 0 * one, 0, cache)
        leaves = []
        for kv in cache.layers:
            kv.key, kv.value = kv.key.clone().requires_grad_(True), kv.value.clone().requires_grad_(True)
            leaves += [kv.key, kv.value]
        later = noise[:, 3:] - bw.velocity(noise[:, 3:], one, 1, cache)
        upstream = torch.autograd.grad((later * w).sum(), leaves)
        eps0 = noise[:, :3].clone().requires_grad_(True)
        sinks = [LayerKV() for _ in model64.blocks]
        t = timestep_from_sigma(one)
        model64.run(eps0, t, bw.text, torch.arange(3), cache=bw.new_cache(), sinks=sinks)
        exit_kv = [x for s in sinks for x in (s.key, s.value)]
        (expected,) = torch.autograd.grad(exit_kv, eps0, grad_outputs=list(upstream))
    finally:
        model64.disable_gradient_checkpointing()
    torch.testing.assert_close(leak, expected, rtol=1e-9, atol=1e-12)
    assert expected.abs().max() > 0


def test_kv_blockwise_chooses_the_adapter_and_refuses_a_string(model, text):
    assert type(kv_blockwise(model, text, 3)) is CausalWanBlockwise
    assert isinstance(kv_blockwise(model, text, 3, CacheGradient.PUBLISHED_LEAK), ExitGradientBlockwise)
    with pytest.raises(ValueError, match="CacheGradient"):
        kv_blockwise(model, text, 3, "published-leak")


def test_inference_commits_stay_detached(model, latents, text, cache_kind):
    """Without a grad-enabled call nothing is leaked: the cache holds no graph."""
    bw = kv_blockwise(model, text, 3, CacheGradient.PUBLISHED_LEAK)
    cache = bw.new_cache(cache_kind, 6)
    with torch.no_grad():
        few_step_rollout(bw, latents, 3, SIGMAS.float(), cache)
    kvs = [cache.get(i) for i in range(len(model.blocks))]
    assert all(not k.requires_grad and not v.requires_grad for k, v in kvs)


def test_the_leak_persists_past_later_commits(model64, text, cache_kind):
    """Three blocks: block 2 reads block 0's committed K/V, so with the leak its loss reaches block 0's exit call (the
    authors' in-place cache keeps every exit write's history). A commit under ``no_grad`` must not drop the graph the
    cache already carries (it once did: block 1's commit concatenated it away). Both caches give the same gradient."""
    g = torch.Generator().manual_seed(11)
    noise = torch.randn(1, 9, 4, 8, 8, generator=g, dtype=torch.float64).requires_grad_(True)
    txt = text[:1].double()

    def block0_grad(kind: str, cache_gradient: CacheGradient) -> torch.Tensor:
        bw = kv_blockwise(model64, txt, 3, cache_gradient)
        out = few_step_rollout(
            bw, noise, 3, SIGMAS, bw.new_cache(kind, 9), [0, 0, 0], 0.0, torch.Generator().manual_seed(3)
        )
        return torch.autograd.grad(out.x0[:, 6:].sum(), noise)[0][:, :3]

    leak = block0_grad(cache_kind, CacheGradient.PUBLISHED_LEAK)
    assert leak.abs().sum() > 0
    assert torch.count_nonzero(block0_grad(cache_kind, CacheGradient.NONE)) == 0
    other = "static" if cache_kind == "dynamic" else "dynamic"
    torch.testing.assert_close(leak, block0_grad(other, CacheGradient.PUBLISHED_LEAK), rtol=1e-9, atol=1e-12)
