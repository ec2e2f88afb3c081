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


@pytest.mark.parametrize("family", ["ar-diffusion", "ode-pairs", "ode", "cd"])
def test_frame_wise_equals_chunk_wise_without_a_rollout(family, small_arch):
    """Stages without a rollout simulate identically at block size 1 and 3 (fake models attend without masks;
    the per-block noise levels and index draws have the same shapes): the same peak, activations, gradients,
    optimizer state and weights in all, the same FLOPs; bytes moved within 1e-5 (the per-block draws' small
    tensors). Two ranks (FSDP-sharded). So the plan simulates them once."""
    small = ["video.latent_frames=6", "video.latent_height=8", "video.latent_width=8"]
    steps = [
        simulate_family(build_config(f"configs/full/causal_forcing_{name}.yaml", small), family, 2, small_arch)
        for name in ("chunkwise", "framewise")
    ]
    for chunk, frame in zip(*steps, strict=True):
        a, b = chunk.memory, frame.memory
        assert (a.total, a.activations, a.gradients, a.optimizer) == (b.total, b.activations, b.gradients, b.optimizer)
        assert a.parameters + a.ema + a.frozen == b.parameters + b.ema + b.frozen
        assert chunk.ops.flops == frame.ops.flops
        assert chunk.ops.bytes == pytest.approx(frame.ops.bytes, rel=1e-5)
