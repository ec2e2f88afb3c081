"""full.block: the in-place inference forward is the stock WanTransformerBlock's, bit for bit, and leaves its input
alone; other cases run the stock forward."""

from __future__ import annotations

import torch
from diffusers.models.transformers.transformer_wan import WanTransformerBlock

from full.block import CausalWanTransformerBlock
from full.model import CausalWanTransformer3DModel
from full.tiny import transformer_kwargs


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
    block = model.blocks[0]
    x, temb = torch.randn(2, 16, block.norm1.normalized_shape[0]), torch.randn(2, 6, block.norm1.normalized_shape[0])
    kept = x.clone()
    with torch.no_grad():
        block(x, torch.randn(2, 5, x.shape[-1]), temb, model.rotary(torch.arange(1), 8, 8))
    assert torch.equal(x, kept)
    assert not block._in_place(x, temb)  # grad mode: the stock forward
    with torch.no_grad():
        assert block._in_place(x, temb) and not block._in_place(x.double(), temb)
