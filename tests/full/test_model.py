"""The causal Wan DiT: every mode against an independent computation (tiny random weights, CPU, fp32)."""

from __future__ import annotations

import pytest
import torch
from diffusers import WanTransformer3DModel

from cf_ref.masks import AttentionMode
from cf_ref.rollout import ar_ode_sample, few_step_rollout
from cf_ref.schedule import few_step_sigmas, sigma_grid
from full.architectures import ARCHITECTURES, TimestepInput
from full.attention import MaskKernel
from full.cache import LayerKV
from full.dtypes import cast_keeping_fp32
from full.model import CausalWanTransformer3DModel
from full.tiny import transformer_kwargs
from tests.full.test_timestep_embedding import numpy_sinusoid

BC, TF, BI = AttentionMode.BLOCK_CAUSAL, AttentionMode.TEACHER_FORCING, AttentionMode.BIDIRECTIONAL


def stock_velocity(stock: WanTransformer3DModel, x, sigma, text):
    """diffusers' own forward, in cf_ref layout: [B, F, C, H, W] ↔ [B, C, F, H, W], t = 1000σ. sigma ``[B]``, or
    ``[B, L]`` per token (Wan2.2's ``expand_timesteps`` input)."""
    out = stock(x.permute(0, 2, 1, 3, 4), sigma * 1000, text).sample
    return out.permute(0, 2, 1, 3, 4)


def per_block_sigma(batch: int, frames: int, block: int, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, frames // block, generator=g).repeat_interleave(block, dim=1)


def kv_rollout_velocity(model, x, sigma, text, block, window=None, commit=None, commit_sigma=0.0, cache="dynamic"):
    """Velocity of every block through the KV cache (of kind ``cache``); block j is committed as
    ``commit[:, block j]`` at σ=0 (teacher-forcing style) or, by default, as its own input at its own level."""
    bw = model.blockwise(text, block, window=window)
    cache = bw.new_cache(cache, max_frames=x.shape[1])
    outs = []
    for j in range(x.shape[1] // block):
        span = slice(j * block, (j + 1) * block)
        outs.append(bw.velocity(x[:, span], sigma[:, span], j, cache))
        if commit is None:
            cache = bw.commit(x[:, span], sigma[:, span], j, cache)
        else:
            cache = bw.commit(commit[:, span], torch.full_like(sigma[:, span], commit_sigma), j, cache)
    return torch.cat(outs, dim=1), cache


class NumpyFloat64Timesteps(torch.nn.Module):
    """A stand-in for diffusers' ``Timesteps`` computing the sinusoid in float64 with numpy (then float32)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(numpy_sinusoid(t.double().numpy(), self.dim)).float()


@torch.no_grad()
def test_bidirectional_equals_stock_diffusers(arch):
    """Equal to the stock forward given the float64 sinusoid (computed independently, numpy), and within the
    float32 sinusoid's rounding of the stock forward as it ships."""
    cfg, model, latents, text = arch
    stock = WanTransformer3DModel(**transformer_kwargs(cfg)).eval()
    stock.load_state_dict(model.state_dict())
    sigma = torch.tensor([0.3, 0.8])
    shipped = stock_velocity(stock, latents, sigma, text)
    stock.condition_embedder.timesteps_proj = NumpyFloat64Timesteps(transformer_kwargs(cfg)["freq_dim"])
    ref = stock_velocity(stock, latents, sigma, text)
    assert ref.abs().mean() > 0.05  # a non-degenerate output
    v = model.velocity(latents, sigma, text, mode=BI)
    torch.testing.assert_close(v, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(v, shipped, rtol=0, atol=2e-5)
    # the same per-sample level given per frame goes through the folded per-frame modulation
    v_frames = model.velocity(latents, sigma[:, None].expand(2, 6), text, mode=BI)
    torch.testing.assert_close(v_frames, ref, rtol=0, atol=1e-5)
    # the stock forward still works (bidirectionally) with the causal processors installed
    torch.testing.assert_close(stock_velocity(model, latents, sigma, text), shipped, rtol=0, atol=1e-6)


@torch.no_grad()
def test_per_frame_levels_equal_stock_per_token_timesteps(arch):
    """Per-frame σ [B, F] (folded modulation) = diffusers' per-token timesteps [B, L] (Wan2.2's expand_timesteps
    input, the way the TI2V model was trained), each frame's level repeated over its 16 tokens; with frame 0 at
    σ = 0, as TI2V conditions the first frame."""
    cfg, model, latents, text = arch
    stock = WanTransformer3DModel(**transformer_kwargs(cfg)).eval()
    stock.load_state_dict(model.state_dict())
    sigma = per_block_sigma(2, 6, 1)
    sigma[:, 0] = 0.0
    stock.condition_embedder.timesteps_proj = NumpyFloat64Timesteps(transformer_kwargs(cfg)["freq_dim"])
    ref = stock_velocity(stock, latents, sigma.repeat_interleave(16, dim=1), text)
    torch.testing.assert_close(model.velocity(latents, sigma, text, mode=BI), ref, rtol=0, atol=1e-5)
    expected = TimestepInput.PER_TOKEN if cfg.arch == "wan2.2-ti2v-5b" else TimestepInput.PER_SAMPLE
    assert ARCHITECTURES[cfg.arch].timesteps is expected


@torch.no_grad()
@pytest.mark.parametrize("block", [1, 3])
def test_block_causal_ignores_later_blocks_and_bidirectional_does_not(arch, block):
    _, model, latents, text = arch
    sigma = per_block_sigma(2, 6, block)
    cut = 3  # frames [3, 6) are changed: whole blocks for b = 1 and b = 3
    changed = latents.clone()
    changed[:, cut:] += torch.randn_like(changed[:, cut:])
    changed_sigma = sigma.clone()
    changed_sigma[:, cut:] = 0.5 * changed_sigma[:, cut:]
    a = model.velocity(latents, sigma, text, mode=BC, block_size=block)
    b = model.velocity(changed, changed_sigma, text, mode=BC, block_size=block)
    torch.testing.assert_close(a[:, :cut], b[:, :cut], rtol=0, atol=1e-6)
    assert (a[:, cut:] - b[:, cut:]).abs().max() > 1e-3
    a = model.velocity(latents, sigma, text, mode=BI)
    b = model.velocity(changed, changed_sigma, text, mode=BI)
    assert (a[:, :cut] - b[:, :cut]).abs().max() > 1e-3


@torch.no_grad()
def test_per_frame_timesteps_change_only_their_frame_in_frame_wise_mode(arch):
    _, model, latents, text = arch
    sigma = per_block_sigma(2, 6, 1)
    other = sigma.clone()
    other[:, 2] = 0.05
    a = model.velocity(latents, sigma, text, mode=BC, block_size=1)
    b = model.velocity(latents, other, text, mode=BC, block_size=1)
    torch.testing.assert_close(a[:, :2], b[:, :2], rtol=0, atol=1e-6)
    assert (a[:, 2] - b[:, 2]).abs().max() > 1e-3


@torch.no_grad()
@pytest.mark.parametrize("block,window", [(1, None), (3, None), (1, 2), (2, 1)])
def test_kv_cache_rollout_equals_one_block_causal_forward(arch, block, window, cache_kind):
    _, model, latents, text = arch
    sigma = per_block_sigma(2, 6, block)
    full = model.velocity(latents, sigma, text, mode=BC, block_size=block, window=window)
    kv, cache = kv_rollout_velocity(model, latents, sigma, text, block, window, cache=cache_kind)
    torch.testing.assert_close(kv, full, rtol=0, atol=1e-5)
    assert cache.num_frames == 6
    assert cache.cached_frames == (6 if window is None else (window - 1) * block)


@torch.no_grad()
@pytest.mark.parametrize("block", [1, 3])
def test_teacher_forcing_equals_block_causal_given_clean_prefix(arch, block, cache_kind):
    _, model, latents, text = arch
    sigma = per_block_sigma(2, 6, block)
    clean = torch.randn_like(latents)
    tf = model.velocity(latents, sigma, text, mode=TF, block_size=block, clean=clean)
    for j in range(6 // block):
        span = slice(j * block, (j + 1) * block)
        seq = torch.cat([clean[:, : j * block], latents[:, span]], dim=1)
        levels = torch.cat([torch.zeros(2, j * block), sigma[:, span]], dim=1)
        ref = model.velocity(seq, levels, text, mode=BC, block_size=block)[:, j * block :]
        torch.testing.assert_close(tf[:, span], ref, rtol=0, atol=1e-5)
    # and the KV cache filled with the clean frames at σ = 0 reproduces it block by block
    kv, _ = kv_rollout_velocity(model, latents, sigma, text, block, commit=clean, cache=cache_kind)
    torch.testing.assert_close(kv, tf, rtol=0, atol=1e-5)


@torch.no_grad()
def test_teacher_forcing_with_noisy_context_equals_a_cache_committed_at_that_level(arch, cache_kind):
    _, model, latents, text = arch
    sigma = per_block_sigma(2, 6, 3)
    context = torch.randn_like(latents)
    tf = model.velocity(
        latents, sigma, text, mode=TF, block_size=3, clean=context, clean_sigma=torch.tensor([0.1, 0.1])
    )
    kv, _ = kv_rollout_velocity(model, latents, sigma, text, 3, commit=context, commit_sigma=0.1, cache=cache_kind)
    torch.testing.assert_close(kv, tf, rtol=0, atol=1e-5)
    assert (tf - model.velocity(latents, sigma, text, mode=TF, block_size=3, clean=context)).abs().max() > 1e-4


@torch.no_grad()
def test_teacher_forcing_output_does_not_depend_on_later_clean_frames(model, latents, text):
    sigma = per_block_sigma(2, 6, 3)
    clean = torch.randn_like(latents)
    other = clean.clone()
    other[:, 3:] = torch.randn_like(other[:, 3:])
    a = model.velocity(latents, sigma, text, mode=TF, block_size=3, clean=clean)
    b = model.velocity(latents, sigma, text, mode=TF, block_size=3, clean=other)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)  # block 1 sees clean block 0 only
    other[:, :3] = torch.randn_like(other[:, :3])
    c = model.velocity(latents, sigma, text, mode=TF, block_size=3, clean=other)
    torch.testing.assert_close(a[:, :3], c[:, :3], rtol=0, atol=1e-6)  # block 0 sees no clean frame
    assert (a[:, 3:] - c[:, 3:]).abs().max() > 1e-3


@torch.no_grad()
def test_flex_block_mask_equals_sdpa_token_mask(latents, text):
    model = CausalWanTransformer3DModel(**transformer_kwargs()).eval()
    sigma = per_block_sigma(2, 6, 3)
    clean = torch.randn_like(latents)
    ref = model.velocity(latents, sigma, text, mode=TF, block_size=3, clean=clean)
    ref_bc = model.velocity(latents, sigma, text, mode=BC, block_size=1, window=2)
    model.mask_kernel = MaskKernel.FLEX
    with pytest.warns(UserWarning, match="flex_attention called without torch.compile"):
        flex = model.velocity(latents, sigma, text, mode=TF, block_size=3, clean=clean)
    torch.testing.assert_close(flex, ref, rtol=0, atol=1e-5)
    flex_bc = model.velocity(latents, sigma, text, mode=BC, block_size=1, window=2)
    torch.testing.assert_close(flex_bc, ref_bc, rtol=0, atol=1e-5)


@torch.no_grad()
def test_ar_ode_sample_on_the_kv_cache_integrates_the_teacher_forcing_field(model, latents, text, cache_kind):
    bw = model.blockwise(text, 3)
    grid = sigma_grid(4, shift=5.0)
    keep = few_step_sigmas((1000, 500), shift=5.0)
    out = ar_ode_sample(bw, latents, 3, grid, bw.new_cache(cache_kind, 6), keep_at=keep)
    assert out.x0.shape == latents.shape and out.states.shape == (2, 2, *latents.shape[1:])
    assert torch.isfinite(out.x0).all()
    # block 1's trajectory is the Euler ODE of the teacher-forcing field with block 0's output as clean context
    x = latents[:, 3:]
    for k in range(4):
        s = torch.full((2, 6), float(grid[k]))
        v = model.velocity(torch.cat([latents[:, :3], x], 1), s, text, mode=TF, block_size=3, clean=out.x0)[:, 3:]
        x = x + float(grid[k + 1] - grid[k]) * v
    torch.testing.assert_close(x, out.x0[:, 3:], rtol=0, atol=1e-4)


def test_self_forcing_rollout_gradient_flows_through_exit_steps_only(latents, text, cache_kind):
    model = CausalWanTransformer3DModel(**transformer_kwargs()).train()
    sigmas = few_step_sigmas((1000, 750, 500, 250), shift=5.0).float()
    bw = model.blockwise(text, 3)  # cross-attention K/V computed with grad
    out = few_step_rollout(bw, latents, 3, sigmas, bw.new_cache(cache_kind, 6), exit_steps=[1, 2], context_noise=0.1)
    assert out.x0.requires_grad
    out.x0.square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["blocks.0.attn1.to_q.weight"].abs().sum() > 0
    assert grads["blocks.0.attn2.to_k.weight"].abs().sum() > 0  # through the once-per-prompt text K/V
    assert grads["condition_embedder.text_embedder.linear_1.weight"].abs().sum() > 0


def test_gradient_checkpointing_gives_the_same_gradients(latents, text):
    model = CausalWanTransformer3DModel(**transformer_kwargs()).train()
    sigma = per_block_sigma(2, 6, 3)
    clean = torch.randn_like(latents)

    def grads():
        model.zero_grad()
        model.velocity(latents, sigma, text, mode=TF, block_size=3, clean=clean).square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain = grads()
    model.enable_gradient_checkpointing()
    assert model.gradient_checkpointing
    checkpointed = grads()
    for name, g in plain.items():
        torch.testing.assert_close(checkpointed[name], g, rtol=1e-5, atol=1e-7, msg=name)


@torch.no_grad()
def test_bf16_runs_and_stays_close_to_fp32(model, latents, text):
    bf16 = CausalWanTransformer3DModel(**transformer_kwargs()).eval()
    bf16.load_state_dict(model.state_dict())
    cast_keeping_fp32(bf16, torch.bfloat16)
    assert bf16.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    assert bf16.condition_embedder.time_embedder.linear_1.weight.dtype == torch.float32
    sigma = per_block_sigma(2, 6, 3)
    ref = model.velocity(latents, sigma, text, mode=BC, block_size=3)
    v = bf16.velocity(latents, sigma, text, mode=BC, block_size=3)
    assert v.dtype == torch.float32 and torch.isfinite(v).all()
    assert (v - ref).abs().mean() < 0.05 * ref.abs().mean()
    kv, _ = kv_rollout_velocity(bf16, latents, sigma, text, 3)
    assert (kv - ref).abs().mean() < 0.05 * ref.abs().mean()


def test_save_and_load_offline_round_trip(model, latents, text, tmp_path):
    model.save_pretrained(tmp_path / "causal")
    loaded = CausalWanTransformer3DModel.from_pretrained(tmp_path / "causal").eval()
    stock = WanTransformer3DModel.from_pretrained(tmp_path / "causal").eval()
    stock.save_pretrained(tmp_path / "stock")
    from_stock = CausalWanTransformer3DModel.from_pretrained(tmp_path / "stock").eval()
    assert model.state_dict().keys() == stock.state_dict().keys()
    with torch.no_grad():
        sigma = per_block_sigma(2, 6, 3)
        ref = model.velocity(latents, sigma, text, mode=BC, block_size=3)
        for other in (loaded, from_stock):
            torch.testing.assert_close(other.velocity(latents, sigma, text, mode=BC, block_size=3), ref)


@torch.no_grad()
def test_bad_inputs_give_clear_errors(model, latents, text):
    with pytest.raises(ValueError, match=r"latents \[B, F, C=4, H, W\]"):
        model.velocity(latents[:, :, :3], 0.5, text, mode=BC)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model.velocity(latents[..., :7], 0.5, text, mode=BC)
    with pytest.raises(ValueError, match="does not divide the number of frames"):
        model.velocity(latents, 0.5, text, mode=BC, block_size=4)
    with pytest.raises(ValueError, match="teacher-forcing mode"):
        model.velocity(latents, 0.5, text, mode=BC, clean=latents)
    with pytest.raises(ValueError, match="teacher-forcing mode"):
        model.velocity(latents, 0.5, text, mode=TF)
    with pytest.raises(ValueError, match="D_text=32"):
        model.velocity(latents, 0.5, text[..., :8], mode=BC)
    with pytest.raises(TypeError, match="AttentionMode"):
        model.velocity(latents, 0.5, text, mode="block_causal")
    bw = model.blockwise(text, 3)
    cache = bw.new_cache()
    with pytest.raises(ValueError, match="commit blocks in order"):
        bw.velocity(latents[:, 3:], torch.ones(2, 3), 1, cache)
    with pytest.raises(ValueError, match="a block holds 3 frames"):
        bw.velocity(latents[:, :2], torch.ones(2, 2), 0, cache)
    bw.commit(latents[:, :3], torch.zeros(2, 3), 0, cache)
    with pytest.raises(ValueError, match="tokens per frame|per frame"):
        bw.velocity(torch.zeros(2, 3, 4, 4, 4), torch.ones(2, 3), 1, cache)


@torch.no_grad()
def test_compiled_blocks_trace_without_graph_breaks_and_match_eager(latents, text):
    """``compile_repeated_blocks(fullgraph=True)`` (what the sampler's ``--compile`` uses) captures every block
    in one graph — a graph break would raise — in block-causal and in KV-cached mode, and changes no output.
    The ``aot_eager`` backend checks the capture (Dynamo + AOTAutograd) without needing a C++ compiler."""
    model = CausalWanTransformer3DModel(**transformer_kwargs())
    sigma = per_block_sigma(2, 6, 3)
    eager = model.velocity(latents, sigma, text, mode=BC, block_size=3)
    model.compile_repeated_blocks(fullgraph=True, backend="aot_eager")
    try:
        compiled = model.velocity(latents, sigma, text, mode=BC, block_size=3)
        kv, _ = kv_rollout_velocity(model, latents, sigma, text, block=3)
    finally:
        torch._dynamo.reset()
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-5)
    torch.testing.assert_close(kv, eager, rtol=0, atol=1e-5)


def test_run_fills_given_sinks_with_the_passes_kv_and_refuses_bad_ones(model, latents, text):
    """``run(..., sinks=...)`` leaves every layer's new post-RoPE K/V, with their graph, in the caller's sinks (what
    the published-leak adapter reads); sinks without a cache or of the wrong count are an error."""
    bw = model.blockwise(text, 3)
    cache = bw.new_cache()
    sinks = [LayerKV() for _ in model.blocks]
    x = latents[:, :3].clone().requires_grad_(True)
    bw.run_block(x, torch.full((2, 3), 0.5), 0, cache, sinks=sinks)
    assert all(s.key.shape == (2, 3 * 16, 2, 16) and s.key.requires_grad and s.value.requires_grad for s in sinks)
    t = torch.full((2, 3), 500.0)
    with pytest.raises(ValueError, match="one LayerKV per transformer block"):
        model.run(latents[:, :3], t, bw.text, torch.arange(3), sinks=sinks)
    with pytest.raises(ValueError, match="one LayerKV per transformer block"):
        model.run(latents[:, :3], t, bw.text, torch.arange(3), cache=bw.new_cache(), sinks=sinks[:1])
