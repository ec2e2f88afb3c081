"""Gradient checkpointing as the plan sees it: with FLOPs counted (as every plan does), each further block adds
only its checkpointed input to the activations at the peak, not the block's full activations."""

from __future__ import annotations

import pytest

from full.config import build_config
from full.plan.simulate import simulate_family
from full.plan.stages import Architectures
from tests.full.plan.conftest import SMALL

# 12 latent frames of 32×32: 256 tokens a frame, ×2 in the teacher-forcing layout, so the activations outweigh
# the weights of the small model and the peak falls in the backward pass
VIDEO = ["video.latent_frames=12", "video.latent_height=32", "video.latent_width=32"]
TOKENS = 12 * 256 * 2


def _activations_per_block(checkpointing: bool) -> float:
    config = build_config(
        "configs/full/causal_forcing_chunkwise.yaml", [*VIDEO, f"parallel.gradient_checkpointing={checkpointing}"]
    )
    acts = []
    for blocks in (2, 4):
        arch = Architectures(dict(SMALL, num_layers=blocks), dict(SMALL, num_layers=blocks), text_tokens=16)
        (step,) = simulate_family(config, "ar-diffusion", 1, arch, count=True)
        assert step.ops is not None and step.ops.flops > 0
        acts.append(step.memory.activations)
    return (acts[1] - acts[0]) / 2


def test_checkpointed_block_adds_its_bf16_input_only():
    width = SMALL["num_attention_heads"] * SMALL["attention_head_dim"]
    checkpointed = TOKENS * width * 2  # the block's input hidden state [B, L, D] in bf16
    assert _activations_per_block(True) == pytest.approx(checkpointed, rel=0.05)
    # without checkpointing a block keeps its full activations: many times more
    assert _activations_per_block(False) > 10 * checkpointed
