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


def _outside_blocks(config: dict, shape: PassShape) -> int:
    return dit_forward_flops({**config, "num_layers": 0}, shape)


def _trained(config: dict, shape: PassShape) -> int:
    """A pass with gradient under gradient checkpointing: forward, backward (2×), the blocks' forward again."""
    fwd = dit_forward_flops(config, shape)
    return 3 * fwd + fwd - _outside_blocks(config, shape)


def test_cd_step_matches_analytic(small_config, small_arch):
    """CD: the student's teacher-forcing pass with gradient, the EMA target's pass and the guided teacher's batched
    (cond ; uncond) pass without; all in the teacher-forcing layout on the clean context."""
    (step,) = simulate_family(small_config, "cd", 1, small_arch)
    frames = small_config.video.latent_frames
    tokens = frames * TOKENS
    tf = PassShape(1, 2 * tokens, 2 * tokens, TEXT, 2 * frames, tokens)
    guided = PassShape(2, 2 * tokens, 2 * tokens, TEXT, 2 * 2 * frames, tokens)
    analytic = _trained(SMALL, tf) + dit_forward_flops(SMALL, tf) + dit_forward_flops(SMALL, guided)
    assert step.ops.flops == pytest.approx(analytic, rel=0.02)


def _rollout(exits: list[int], grad: bool) -> int:
    """The self-forcing rollout (module doc of full.stages.dmd): per block j, exits[j] passes without gradient,
    the exit pass (with gradient when ``grad``) and the commit (no output head); the prompt projected once, the
    cross-attention K/V in every pass."""
    block = 3 * TOKENS
    text = 2 * (SMALL["text_dim"] + SMALL["num_attention_heads"] * SMALL["attention_head_dim"])
    total = text * SMALL["num_attention_heads"] * SMALL["attention_head_dim"] * TEXT * (3 if grad else 1)
    for j, e in enumerate(exits):
        denoise = PassShape(1, block, (j + 1) * block, TEXT, 3, block, text_projection=False)
        commit = PassShape(1, block, (j + 1) * block, TEXT, 3, 0, text_projection=False)
        exit_pass = _trained(SMALL, denoise) if grad else dit_forward_flops(SMALL, denoise)
        total += e * dit_forward_flops(SMALL, denoise) + exit_pass + dit_forward_flops(SMALL, commit)
    return total


def test_dmd_steps_match_analytic(small_config, small_arch):
    """DMD generator: the rollout with gradient through each block's exit pass, then the guided real score
    (batched cond ; uncond, its own depth) and the critic on the whole video, bidirectional, without gradient.
    Critic: the rollout without gradient, then the critic's flow-matching pass with gradient."""
    from full.distributed import DistContext
    from full.stages.dmd import rollout_exits
    from full.stages.randomness import step_random

    generator, critic = simulate_family(small_config, "dmd", 1, small_arch)
    frames, blocks = small_config.video.latent_frames, small_config.video.latent_frames // 3
    tokens = frames * TOKENS
    video = PassShape(1, tokens, tokens, TEXT, frames, tokens)
    real = PassShape(2, tokens, tokens, TEXT, 2 * frames, tokens)

    def exits(purpose: str) -> list[int]:
        return rollout_exits(small_config, blocks, step_random(small_config, DistContext(), "dmd", 0, 0, purpose))[0]

    gen = _rollout(exits("generator"), True)
    gen += dit_forward_flops(small_arch.real_score, real) + dit_forward_flops(SMALL, video)
    assert generator.ops.flops == pytest.approx(gen, rel=0.02)
    assert critic.ops.flops == pytest.approx(_rollout(exits("critic"), False) + _trained(SMALL, video), rel=0.02)
