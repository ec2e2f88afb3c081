"""full.block: the in-place inference forward is the stock WanTransformerBlock's, bit for bit, and leaves its input
alone; other cases run the stock forward; on CPU its FFN hidden reuses the model's workspace from pass to pass."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.transformers.transformer_wan import WanTransformerBlock

from full.block import CausalWanTransformerBlock
from full.model import CausalWanTransformer3DModel
from full.tiny import transformer_kwargs
from full.workspace import Workspace


def test_in_place_forward_equals_the_stock_block(latents, text):
    """A full-sequence pass of the causal model (no grad, float32) equals the same model with stock blocks, exactly,
    per sample and per frame; the block's input is not modified."""
    model = CausalWanTransformer3DModel(**transformer_kwargs()).eval()
    assert all(type(b) is CausalWanTransformerBlock for b in model.blocks)
    stock = CausalWanTransformer3DModel(**transformer_kwargs()).eval()
    stock.load_state_dict(model.state_dict())
    for block in stock.blocks:
        block.__class__ = WanTransformerBlock
    from cf_ref.masks import AttentionMode

    for sigma in (torch.tensor([0.3, 0.8]), torch.rand(2, 6, generator=torch.Generator().manual_seed(3))):
        with torch.no_grad():
            ours = model.velocity(latents, sigma, text, mode=AttentionMode.BIDIRECTIONAL)
            ref = stock.velocity(latents, sigma, text, mode=AttentionMode.BIDIRECTIONAL)
        assert torch.equal(ours, ref)
    assert model.blocks[0].workspace.nbytes() > 0  # the FFN hidden went through the workspace
    block = model.blocks[0]
    x, temb = torch.randn(2, 16, block.norm1.normalized_shape[0]), torch.randn(2, 6, block.norm1.normalized_shape[0])
    kept = x.clone()
    with torch.no_grad():
        block(x, torch.randn(2, 5, x.shape[-1]), temb, model.rotary(torch.arange(1), 8, 8))
    assert torch.equal(x, kept)
    assert not block._in_place(x, temb)  # grad mode: the stock forward
    with torch.no_grad():
        assert block._in_place(x, temb) and not block._in_place(x.double(), temb)


def _largest_allocation(fn) -> int:
    """The largest single allocation (bytes) an op made while ``fn()`` ran (the profiler's self memory per op)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max(e.self_cpu_memory_usage for e in prof.events())


@pytest.mark.parametrize("workspace", [True, False])
def test_a_second_pass_reuses_the_ffn_hidden(model, workspace):
    """With the shared workspace every block of a second pass writes its FFN hidden ``[B, L, F]`` into the same
    memory (no new allocation that large, the same data pointer); without one each pass allocates it afresh.
    The outputs are the same bits either way."""
    block = model.blocks[0]
    d, f = block.norm1.normalized_shape[0], block.ffn.net[0].proj.out_features
    g = torch.Generator().manual_seed(4)
    x, temb, text = torch.randn(2, 16, d, generator=g), torch.randn(2, 6, d, generator=g), torch.randn(2, 5, d)
    rotary = model.rotary(torch.arange(1), 8, 8)
    saved, block.workspace = block.workspace, Workspace() if workspace else None
    ws, shape = block.workspace, (2, 16, f)
    try:
        with torch.no_grad():
            first = block(x, text, temb, rotary)
            pointer = ws.tensor("ffn", shape, x.dtype, x.device).data_ptr() if workspace else None
            largest = _largest_allocation(lambda: block(x, text, temb, rotary))
            second = block(x, text, temb, rotary)
    finally:
        block.workspace = saved
    assert torch.equal(first, second)
    if workspace:
        assert largest < 2 * 16 * f * 4 and ws.tensor("ffn", shape, x.dtype, x.device).data_ptr() == pointer
    else:
        assert largest >= 2 * 16 * f * 4
