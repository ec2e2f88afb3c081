"""VideoStream on the tiny preset: order, equality with generate, prompt switches at block boundaries, re-cache,
reset, steps, unbounded length (rolling cache, RoPE re-anchoring)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from cf_ref.rollout import few_step_rollout
from full.components import WanComponents
from full.sampler import SampleConfig, generate
from full.stream import VideoStream
from full.tiny import TINY, tiny_transformer
from full.video import decode_latents

CFG = SampleConfig(height=TINY.height, width=TINY.width, block_size=3, num_frames=9, steps=2, seed=3)
A, B = "a red ball bouncing", "a blue cube spinning"


def run(stream: VideoStream, n: int, on_block=None) -> list:
    out = []
    for block in stream:
        out.append(block)
        if on_block is not None:
            on_block(len(out) - 1, stream)
        if len(out) == n:
            break
    stream.close()
    return out


def latents(blocks) -> torch.Tensor:
    return torch.cat([b.latents for b in blocks], dim=1)


def reference_rollout(components, prompts: list[str], config: SampleConfig) -> torch.Tensor:
    """Block j under prompts[j], every block one cf_ref few-step rollout over one shared KV cache, the noise
    streams drawn as NoiseSource defines them (one draw seeds the re-noising generator, then one ε per block)."""
    model, text = components.transformer, components.text
    g = torch.Generator().manual_seed(config.seed)
    renoise = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
    cache, outs = None, []
    with torch.no_grad():
        for prompt in prompts:
            bw = model.blockwise(text.encode([prompt]), config.block_size, config.window)
            cache = cache or bw.new_cache()
            eps = torch.randn(1, config.block_size, TINY.latent_channels, 8, 8, generator=g)
            outs.append(few_step_rollout(bw, eps, config.block_size, config.sigmas(), cache, generator=renoise).x0)
            cache.rebase()
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("steps,first", [(1, 4), (2, None), (4, None)])
def test_stream_equals_generate_for_a_fixed_prompt_and_seed(tiny_components, steps, first):
    config = replace(CFG, steps=steps, first_block_steps=first)
    ref = generate(tiny_components, tiny_components.text.encode([A]), config)
    blocks = run(VideoStream(tiny_components, A, config), 3)
    torch.testing.assert_close(latents(blocks), ref.latents, rtol=0, atol=0)
    torch.testing.assert_close(torch.cat([b.video for b in blocks], dim=1), ref.video, rtol=0, atol=0)
    assert [b.steps for b in blocks] == [first or steps, steps, steps]


def test_blocks_arrive_in_order_with_their_frames(tiny_components):
    blocks = run(VideoStream(tiny_components, A, CFG, max_blocks=3), 10)
    assert [b.index for b in blocks] == [0, 1, 2] and [b.block.start_frame for b in blocks] == [0, 3, 6]
    assert [b.video.shape[1] for b in blocks] == [1 + 4 * 2, 12, 12]  # Wan's causal VAE: 1 + 4(F-1) in all
    assert {b.prompt_index for b in blocks} == {0} and {b.prompt for b in blocks} == {A}
    whole = decode_latents(tiny_components.vae, latents(blocks))
    torch.testing.assert_close(torch.cat([b.video for b in blocks], dim=1), whole, rtol=0, atol=1e-5)
    assert blocks[0].frames_uint8().shape == (9, TINY.height, TINY.width, 3)


def test_prompt_switch_takes_effect_at_the_next_block_boundary_and_not_before(tiny_components):
    only_a = latents(run(VideoStream(tiny_components, A, CFG), 4))
    # switch between blocks: asked after block 1 was delivered
    between = run(VideoStream(tiny_components, A, CFG), 4, lambda i, s: i == 1 and s.set_prompt(B))
    ref = reference_rollout(tiny_components, [A, A, B, B], CFG)
    torch.testing.assert_close(latents(between), ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(latents(between)[:, :6], only_a[:, :6], rtol=0, atol=0)
    assert not torch.allclose(latents(between)[:, 6:], only_a[:, 6:], atol=1e-3)
    assert [b.prompt_index for b in between] == [0, 0, 1, 1] and between[2].prompt == B
    # asked from inside block 1's computation (as another thread would): block 1 is untouched, block 2 switches
    stream = VideoStream(tiny_components, A, CFG)

    def switch_during_block_1(module, args):
        if stream.sampler.generated == 1 and stream.prompt_index == 0:
            stream.set_prompt(B)

    hook = tiny_components.transformer.blocks[0].register_forward_pre_hook(switch_during_block_1)
    try:
        during = run(stream, 4)
    finally:
        hook.remove()
    torch.testing.assert_close(latents(during), latents(between), rtol=0, atol=0)
    assert [b.prompt_index for b in during] == [0, 0, 1, 1]


def test_recache_recomputes_the_held_frames_under_the_new_prompt(tiny_components, cache_kind):
    config = replace(CFG, window=2, cache=cache_kind)  # the cache holds one block
    plain = run(VideoStream(tiny_components, A, config), 3, lambda i, s: i == 1 and s.set_prompt(B))
    recached = run(VideoStream(tiny_components, A, config, recache=True), 3, lambda i, s: i == 1 and s.set_prompt(B))
    torch.testing.assert_close(latents(recached)[:, :6], latents(plain)[:, :6], rtol=0, atol=0)
    assert recached[2].timings["recache"] > 0 and "recache" not in recached[1].timings
    # independent: block 1 committed under B at its frames 3..5 into a fresh cache, then block 2 rolled out on
    # it with the noise it would have drawn (ε: the third draw; re-noising: after one draw per earlier block)
    model, shape = tiny_components.transformer, (1, 3, TINY.latent_channels, 8, 8)
    g = torch.Generator().manual_seed(config.seed)
    renoise = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
    eps = [torch.randn(shape, generator=g) for _ in range(3)][2]
    [torch.randn(shape, generator=renoise) for _ in range(2)]
    bw = model.blockwise(tiny_components.text.encode([B]), 3, window=2)
    cache = bw.new_cache()
    cache.num_frames = cache.origin = 3
    with torch.no_grad():
        bw.commit(recached[1].latents, torch.zeros(1, 3), 0, cache)
        cache.rebase()
        ref = few_step_rollout(bw, eps, 3, config.sigmas(), cache, generator=renoise).x0
    torch.testing.assert_close(recached[2].latents, ref, rtol=0, atol=1e-6)
    assert not torch.allclose(recached[2].latents, plain[2].latents, atol=1e-4)  # the re-cache changed the context


def test_reset_starts_a_new_video(tiny_components):
    fresh = run(VideoStream(tiny_components, B, replace(CFG, seed=11)), 2)
    stream = VideoStream(tiny_components, A, CFG)

    def reset_after_first(i, s):
        if i == 0:
            s.set_prompt(B)
            s.reset(seed=11)

    blocks = run(stream, 3, reset_after_first)
    torch.testing.assert_close(latents(blocks[1:]), latents(fresh), rtol=0, atol=0)
    assert [b.video_index for b in blocks] == [0, 1, 1] and blocks[1].block.start_frame == 0
    assert blocks[1].video.shape[1] == 9  # a new video: the decoder restarted


def test_set_steps_applies_from_the_next_block(tiny_components):
    blocks = run(VideoStream(tiny_components, A, replace(CFG, first_block_steps=4)), 3, lambda i, s: s.set_steps(1))
    assert [b.steps for b in blocks] == [4, 1, 1]
    with pytest.raises(ValueError, match="steps"):
        VideoStream(tiny_components, A, CFG).set_steps(0)


def test_unbounded_stream_reanchors_rope_positions(tiny_components, cache_kind):
    """Past rope_max_seq_len frames the held frames are re-committed from position 0. With a one-block window
    a block sees only itself, and RoPE is relative, so re-anchoring must not change the video."""
    short = tiny_transformer(seed=0, cfg=replace(TINY, rope_max_seq_len=9))
    short.load_state_dict(tiny_components.transformer.state_dict())
    limited = WanComponents(short, tiny_components.vae, tiny_components.text)
    config = replace(CFG, window=1, cache=cache_kind)
    ref = latents(run(VideoStream(tiny_components, A, config), 6))
    stream = VideoStream(limited, A, config)
    got = run(stream, 6)
    assert max(b.block.start_frame for b in got) == 15 and stream.sampler.cache.num_frames <= 9
    torch.testing.assert_close(latents(got), ref, rtol=0, atol=1e-5)
    # a window of two blocks plus a sink keeps running too; without a window the error says what to do
    run(VideoStream(limited, A, replace(config, window=2, sink=True)), 6)  # sink 3 + window 3 + block 3 = 9 frames
    with pytest.raises(ValueError, match="use a smaller window"):
        run(VideoStream(limited, A, replace(config, window=3, sink=True)), 6)
    with pytest.raises(ValueError, match="set a window"):
        run(VideoStream(limited, A, replace(config, window=None)), 6)


def test_image_to_video_stream_equals_generate(tiny_components):
    config = replace(CFG, block_size=1, num_frames=3)
    image = torch.randn(1, 1, TINY.latent_channels, 8, 8, generator=torch.Generator().manual_seed(0))
    ref = generate(tiny_components, tiny_components.text.encode([A]), config, image_latent=image)
    blocks = run(VideoStream(tiny_components, A, config, image_latent=image), 3)
    assert blocks[0].block.prefill and not blocks[1].block.prefill
    torch.testing.assert_close(latents(blocks), ref.latents, rtol=0, atol=0)


def test_bad_arguments(tiny_components):
    with pytest.raises(ValueError, match="non-empty"):
        VideoStream(tiny_components, "  ", CFG)
    stream = VideoStream(tiny_components, A, CFG)
    with pytest.raises(ValueError, match="non-empty"):
        stream.set_prompt("")
    with pytest.raises(ValueError, match="attention sink needs a rolling cache"):
        VideoStream(tiny_components, A, replace(CFG, sink=True))
    with pytest.raises(ValueError, match="multiple of 16x16"):
        VideoStream(tiny_components, A, replace(CFG, height=72))
