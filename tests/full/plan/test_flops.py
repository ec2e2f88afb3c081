"""FLOPs counted by PyTorch (FlopCounterMode) against the analytic count of the module doc, within 2 %."""

from __future__ import annotations

import pytest
import torch

from cf_ref.masks import AttentionMode
from cf_ref.rollout import few_step_rollout
from full.model import CausalWanTransformer3DModel
from full.plan.flops import ByteCounter, PassShape, count_ops, dit_forward_flops
from full.plan.simulate import simulate_family
from tests.full.plan.conftest import SMALL

FRAMES, TOKENS, TEXT = 6, 16, 16  # 6 latent frames of 8×8 (16 tokens), 16 text tokens


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return CausalWanTransformer3DModel(**SMALL)


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, FRAMES, 16, 8, 8, generator=g), torch.randn(1, TEXT, SMALL["text_dim"], generator=g)


@pytest.mark.parametrize(
    "mode,kwargs,doubled,rows",
    [
        (AttentionMode.BIDIRECTIONAL, {}, False, 1),
        (AttentionMode.BLOCK_CAUSAL, {"block_size": 3}, False, 1),
        (AttentionMode.TEACHER_FORCING, {"block_size": 3, "clean": True}, True, 2 * FRAMES),
    ],
)
def test_forward_matches_analytic(small_model, mode, kwargs, doubled, rows):
    x, text = _inputs()
    if kwargs.get("clean"):
        kwargs = {**kwargs, "clean": x}
    with torch.no_grad():
        _, ops = count_ops(lambda: small_model.velocity(x, 0.5, text, mode=mode, **kwargs))
    tokens = FRAMES * TOKENS * (2 if doubled else 1)
    analytic = dit_forward_flops(SMALL, PassShape(1, tokens, tokens, TEXT, rows, FRAMES * TOKENS))
    assert ops.flops == pytest.approx(analytic, rel=0.02)
    assert ops.bytes > 0


def test_kv_cached_rollout_matches_analytic(small_model):
    """Few-step sampling: per block, 4 denoising passes over its 3 frames (keys: the cache + the block) and one
    cache pass without the output head; the prompt's K/V and projection once."""
    x, text = _inputs()
    sigmas = torch.tensor([1.0, 0.75, 0.5, 0.25])
    with torch.no_grad():
        bw = small_model.blockwise(text, 3)
        _, ops = count_ops(lambda: few_step_rollout(bw, x, 3, sigmas, bw.new_cache()))
    b = 3 * TOKENS
    analytic = 0
    for j in range(FRAMES // 3):
        keys = (j + 1) * b
        denoise = PassShape(1, b, keys, TEXT, 3, b, text_projection=False, text_kv=False)
        cache = PassShape(1, b, keys, TEXT, 3, 0, text_projection=False, text_kv=False)
        analytic += 4 * dit_forward_flops(SMALL, denoise) + dit_forward_flops(SMALL, cache)
    d = SMALL["num_attention_heads"] * SMALL["attention_head_dim"]
    prompt = 2 * (SMALL["text_dim"] * d + d * d) * TEXT + SMALL["num_layers"] * 2 * 2 * d * d * TEXT
    assert ops.flops == pytest.approx(analytic + prompt, rel=0.02)


def test_training_step_is_three_forwards_plus_recompute(small_config, small_arch):
    """ar-diffusion (teacher forcing, gradient checkpointing): forward + backward (2×) + the blocks' recomputed
    forward; the embeddings' input gradients that no one needs are the only slack (< 2 %)."""
    (step,) = simulate_family(small_config, "ar-diffusion", 1, small_arch)
    frames = small_config.video.latent_frames
    tokens = frames * TOKENS
    fwd = dit_forward_flops(SMALL, PassShape(1, 2 * tokens, 2 * tokens, TEXT, 2 * frames, tokens))
    outside_blocks = dit_forward_flops(
        {**SMALL, "num_layers": 0}, PassShape(1, 2 * tokens, 0, TEXT, 2 * frames, tokens)
    )
    analytic = 3 * fwd + (fwd - outside_blocks)
    assert step.ops.flops == pytest.approx(analytic, rel=0.02)


def test_byte_counter_counts_inputs_and_outputs_not_views():
    a, b = torch.ones(4, 8), torch.ones(8, 2)
    with ByteCounter() as counter:
        a.view(8, 4)
        a @ b
    assert counter.total == (32 + 16 + 8) * 4
