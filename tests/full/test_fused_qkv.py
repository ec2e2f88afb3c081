"""full.fused_qkv: RoPE(RMSNorm(x)) as one complex product, and projections written into a given buffer — against
the stock norm and the reference rotation computed in float64."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from full.attention import apply_rotary
from full.fused_qkv import fused_path, normed_rotary, polar_table, project_into


def tables(tokens: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random RoPE angles as the model's float64 tables ``[1, L, 1, Dh]`` (each frequency twice)."""
    theta = torch.rand(1, tokens, 1, head_dim // 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    theta = (theta * 6.0).repeat_interleave(2, dim=-1)
    return theta.cos(), theta.sin()


@pytest.mark.parametrize("fold", [1, 3])
def test_normed_rotary_equals_the_stock_norm_then_rope(fold):
    heads, head_dim, frames, tokens = 4, 16, 3, 5
    g = torch.Generator().manual_seed(1)
    norm = torch.nn.RMSNorm(heads * head_dim, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(heads * head_dim, generator=g) + 0.5)
    x = torch.randn(2 * fold, frames * tokens // fold, heads * head_dim, generator=g)  # frames folded into the batch
    cos, sin = tables(frames * tokens, head_dim)

    def unfold(t):
        return t if fold == 1 else rearrange(t, "(b f) t ... -> b (f t) ...", f=fold)

    # reference: the norm and the rotation in float64 (the stock formula), from the float32 input
    ref_norm = x.double() * torch.rsqrt(x.double().square().mean(-1, keepdim=True) + 1e-6) * norm.weight.double()
    ref = apply_rotary(unfold(ref_norm.unflatten(-1, (heads, head_dim))), cos, sin)
    out = normed_rotary(norm, x, heads, polar_table(cos, sin, torch.float32), unfold)
    assert out.shape == (2, frames * tokens, heads, head_dim) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=2e-6)
    into = torch.zeros(2, frames * tokens + 7, heads, head_dim)[:, 7:]  # a strided view, like a cache's scratch
    with torch.no_grad():  # writing into a buffer: inference only
        assert normed_rotary(norm, x, heads, polar_table(cos, sin, torch.float32), unfold, out=into) is into
    torch.testing.assert_close(into, out, rtol=0, atol=0)
    x64 = x.double().requires_grad_(True)  # float64 and differentiable
    out64 = normed_rotary(norm.double(), x64, heads, polar_table(cos, sin, torch.float64), unfold)
    torch.testing.assert_close(out64, apply_rotary(unfold(norm(x64).unflatten(-1, (heads, head_dim))), cos, sin))
    out64.square().sum().backward()
    assert x64.grad is not None and x64.grad.abs().sum() > 0


def test_polar_table_and_the_path_choice():
    cos, sin = tables(6, 8)
    polar = polar_table(cos, sin, torch.float32)
    assert polar.shape == (1, 6, 1, 4) and polar.dtype == torch.complex64
    torch.testing.assert_close(polar.real.double(), cos[..., 0::2], rtol=0, atol=1e-7)
    torch.testing.assert_close(polar.imag.double(), sin[..., 0::2], rtol=0, atol=1e-7)
    assert polar_table(cos, sin, torch.bfloat16) is None
    assert fused_path(polar, torch.zeros(1)) and not fused_path(polar, torch.zeros(1, dtype=torch.float64))
    assert not fused_path(None, torch.zeros(1))


def test_project_into_writes_the_linear_layer_or_declines():
    g = torch.Generator().manual_seed(2)
    linear = torch.nn.Linear(8, 12)
    x = torch.randn(1, 5, 8, generator=g)
    out = torch.zeros(1, 5, 3, 4)
    with torch.no_grad():
        assert project_into(linear, x, out)
        torch.testing.assert_close(out, linear(x).unflatten(-1, (3, 4)), rtol=0, atol=0)
        strided = torch.zeros(2, 7, 3, 4)[:, 2:]
        assert not project_into(linear, torch.randn(2, 5, 8), strided) and strided.abs().sum() == 0
        assert not project_into(torch.nn.Linear(8, 12, bias=False), x, out)
