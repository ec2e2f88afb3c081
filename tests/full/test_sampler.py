"""The few-step causal sampler and ``cf-ref full sample`` on tiny random models (CPU, offline)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cf_ref.cli import main
from cf_ref.masks import AttentionMode
from cf_ref.rollout import few_step_rollout
from full.convert import diffusers_to_original
from full.sampler import BlockSampler, NoiseSource, SampleConfig, generate, load_components
from full.tiny import TINY, tiny_transformer, write_tiny_pipeline
from full.video import decode_latents, read_mp4, video_frames

SMALL = dict(height=TINY.height, width=TINY.width, num_frames=6, block_size=3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_pipeline(tmp_path_factory.mktemp("wan"), seed=0)


@pytest.fixture(scope="module")
def components(folder):
    return load_components(folder, text_length=TINY.text_length)


@pytest.fixture(scope="module")
def embeds(components):
    return components.text.encode(["a red ball bouncing"])


def test_block_by_block_generation_equals_one_rollout_and_decodes_in_stream(components, embeds, cache_kind):
    config = SampleConfig(**SMALL, context_noise=0.05, seed=7, cache=cache_kind)
    result = generate(components, embeds, config)
    assert result.latents.shape == (1, 6, TINY.latent_channels, 8, 8)
    assert result.video.shape == (1, video_frames(6), 3, TINY.height, TINY.width)
    # one rollout over the whole video; the noise streams as NoiseSource defines them: one draw seeds the
    # device generator, then block j's noise is the j-th draw of the seeded CPU generator
    g = torch.Generator().manual_seed(7)
    renoise = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
    noise = torch.cat([torch.randn(1, 3, TINY.latent_channels, 8, 8, generator=g) for _ in range(2)], dim=1)
    bw = components.transformer.blockwise(embeds, 3)
    with torch.no_grad():
        ref = few_step_rollout(bw, noise, 3, config.sigmas(), bw.new_cache(), context_noise=0.05, generator=renoise)
    torch.testing.assert_close(result.latents, ref.x0, rtol=0, atol=1e-5)
    torch.testing.assert_close(result.video, decode_latents(components.vae, result.latents), rtol=0, atol=1e-5)
    assert set(result.timings) == {"dit", "decode", "first_block", "total"} and result.fps > 0


@torch.no_grad()
def test_restart_gives_a_fresh_generation_and_keeps_the_cache_buffers(components, embeds):
    config = SampleConfig(**SMALL, steps=2, window=2, seed=4, cache="static")
    ref = generate(components, embeds, config, decode=True)
    sampler = BlockSampler(components, config, NoiseSource.from_seed(9, components.device), decode=True)
    sampler.set_text(embeds)
    sampler.next_block()
    buffers = [k.data_ptr() for k, _ in sampler.cache.buffers]
    sampler.restart(NoiseSource.from_seed(4, components.device))
    blocks = [sampler.next_block() for _ in range(2)]
    sampler.close()
    torch.testing.assert_close(torch.cat([b.latents for b in blocks], 1), ref.latents, rtol=0, atol=0)
    torch.testing.assert_close(torch.cat([b.video for b in blocks], 1), ref.video, rtol=0, atol=0)
    assert [k.data_ptr() for k, _ in sampler.cache.buffers] == buffers


def test_seeds_first_block_steps_and_window(components, embeds, cache_kind):
    small = {**SMALL, "cache": cache_kind}
    base = generate(components, embeds, SampleConfig(**small, steps=2, seed=1), decode=False)
    again = generate(components, embeds, SampleConfig(**small, steps=2, seed=1), decode=False)
    other = generate(components, embeds, SampleConfig(**small, steps=2, seed=2), decode=False)
    first4 = generate(components, embeds, SampleConfig(**small, steps=2, first_block_steps=4, seed=1), decode=False)
    rolling = generate(components, embeds, SampleConfig(**small, steps=2, window=1, seed=1), decode=False)
    assert base.video is None
    torch.testing.assert_close(base.latents, again.latents, rtol=0, atol=0)
    assert not torch.allclose(base.latents, other.latents)
    assert not torch.allclose(base.latents[:, :3], first4.latents[:, :3])
    torch.testing.assert_close(rolling.latents[:, :3], base.latents[:, :3], rtol=0, atol=1e-6)  # nothing to evict yet
    assert not torch.allclose(rolling.latents[:, 3:], base.latents[:, 3:])


def test_image_to_video_keeps_the_image_latent_as_frame_zero(components, embeds):
    image = torch.randn(1, 1, TINY.latent_channels, 8, 8)
    config = SampleConfig(height=TINY.height, width=TINY.width, num_frames=3, block_size=1, steps=1)
    result = generate(components, embeds, config, image_latent=image)
    assert result.latents.shape[1] == 3
    torch.testing.assert_close(result.latents[:, :1], image)


def test_chunk_wise_image_to_video_equals_block_causal_passes_with_a_clean_frame_zero(components, embeds):
    """TI2V with blocks of 3: frame 0 is the image at σ = 0 in block 0's pass; one step, so each block's x̂0 is
    its noise minus the block-causal velocity of [earlier clean frames ; image or noise] (computed without cache)."""
    image = torch.randn(1, 1, TINY.latent_channels, 8, 8, generator=torch.Generator().manual_seed(3))
    config = SampleConfig(**SMALL, steps=1, seed=4)
    result = generate(components, embeds, config, image_latent=image, decode=False)
    g = torch.Generator().manual_seed(4)
    torch.randint(0, 2**62, (1,), generator=g)  # the draw that seeds the re-noising stream
    noise = torch.cat([torch.randn(1, 3, TINY.latent_channels, 8, 8, generator=g) for _ in range(2)], dim=1)
    model, bc = components.transformer, AttentionMode.BLOCK_CAUSAL
    with torch.no_grad():
        x = torch.cat([image, noise[:, 1:3]], dim=1)
        v = model.velocity(x, torch.tensor([[0.0, 1, 1]]), embeds, mode=bc, block_size=3)
        first = torch.cat([image, noise[:, 1:3] - v[:, 1:]], dim=1)
        x = torch.cat([first, noise[:, 3:]], dim=1)
        v = model.velocity(x, torch.tensor([[0.0, 0, 0, 1, 1, 1]]), embeds, mode=bc, block_size=3)
        expected = torch.cat([first, noise[:, 3:] - v[:, 3:]], dim=1)
    torch.testing.assert_close(result.latents, expected, rtol=0, atol=1e-5)
    assert torch.equal(result.latents[:, :1], image)


def test_checkpoint_replaces_the_dit_weights(folder, tmp_path):
    other = tiny_transformer(seed=5)
    original = {f"model.{k}": v for k, v in diffusers_to_original(other.state_dict()).items()}
    torch.save({"generator": original}, tmp_path / "gen.pt")
    loaded = load_components(folder, checkpoint=tmp_path / "gen.pt", text_length=TINY.text_length)
    state = loaded.transformer.state_dict()
    assert all(torch.equal(state[k], v) for k, v in other.state_dict().items())
    with pytest.raises(ValueError, match="does not fit"):
        torch.save({"generator": {"model.blocks.0.self_attn.q.weight": torch.zeros(2, 2)}}, tmp_path / "bad.pt")
        load_components(folder, checkpoint=tmp_path / "bad.pt", text_length=TINY.text_length)


def test_config_errors():
    with pytest.raises(ValueError, match="does not divide the number of latent frames"):
        SampleConfig(num_frames=21, block_size=4).validate()
    with pytest.raises(ValueError, match="context_noise"):
        SampleConfig(context_noise=1.5).validate()


def _run(args: list[str]):
    return CliRunner().invoke(main, ["full", "sample", *args], catch_exceptions=False)


def test_cli_writes_decodable_mp4s_of_the_right_length(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\n\na dog on a skateboard\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["--preset", "tiny", "--prompts", str(prompts), "--frames", "3", "--block", "1", "--steps", "2"]
    result = _run([*args, "--save-latents", "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "samples.json").read_text())
    assert [s["prompt"] for s in manifest["samples"]] == ["a cat", "a dog on a skateboard"]
    for sample in manifest["samples"]:
        frames = read_mp4(out / sample["file"])
        assert frames.shape == (video_frames(3), TINY.height, TINY.width, 3) and frames.dtype == np.uint8
        assert sample["video_frames"] == 9
        assert (out / sample["file"].replace(".mp4", ".safetensors")).is_file()


def test_cli_image_to_video(tmp_path):
    import imageio.v2 as imageio

    imageio.imwrite(tmp_path / "first.png", np.full((TINY.height, TINY.width, 3), 200, dtype=np.uint8))
    args = ["--preset", "tiny", "--prompt", "a lamp", "--image", str(tmp_path / "first.png"), "--block", "1"]
    result = _run([*args, "--frames", "2", "--steps", "1", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert read_mp4(tmp_path / "out" / "000_a_lamp.mp4").shape[0] == video_frames(2)


def test_cli_bad_inputs_give_clear_errors(tmp_path, folder):
    import imageio.v2 as imageio

    out = ["--out", str(tmp_path / "out")]
    cases = [
        (["--model", str(tmp_path / "nowhere"), "--prompt", "x"], "model folder"),
        (["--preset", "tiny", "--prompt", "x", "--frames", "7", "--block", "3"], "does not divide"),
        (["--preset", "tiny", "--prompt", "x", "--height", "72"], "must be a multiple of 16x16"),
        (["--preset", "tiny", "--prompt", "x", "--height", "0"], "must be positive"),
        (["--preset", "tiny", "--prompt", "x", "--sink"], "attention sink needs a rolling cache"),
        (["--preset", "tiny", "--prompt", "x", "--prompts", str(tmp_path)], "Error"),
        (["--model", folder, "--preset", "tiny", "--prompt", "x"], "exactly one of --model"),
        (
            ["--preset", "tiny", "--prompt", "x", "--cuda-graphs", "--device", "cpu"],
            "--cuda-graphs needs a CUDA device",
        ),
    ]
    imageio.imwrite(tmp_path / "small.png", np.zeros((32, 32, 3), dtype=np.uint8))
    cases += [
        (["--preset", "tiny", "--prompt", "x", "--block", "1", "--frames", "2", "--image", str(tmp_path / "small.png")], "32x32 pixels"),
    ]  # fmt: skip
    for args, message in cases:
        result = _run([*args, *out])
        assert result.exit_code != 0, args
        assert message in result.output, (args, result.output)


def test_cli_hostile_inputs_are_one_line_before_any_generation(tmp_path, read_only_dir):
    """Each case: exit code 1 or 2, an ``Error:`` line, no traceback, nothing written."""
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9 au lait\n")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)))
    base = ["--preset", "tiny", "--frames", "3", "--block", "1", "--steps", "1"]
    cases = [
        (["--prompt", "x", "--height", "-64"], "must be positive"),
        (["--prompt", "x", "--shift", "-5"], "shift must be > 0"),
        (["--prompt", "x", "--fps", "0"], "Invalid value for '--fps'"),
        (["--prompt", "x", "--device", "cuda"] if not torch.cuda.is_available() else ["--prompt", "x", "--device", "cuda:99"], "device cuda"),
        (["--prompt", "caf\udce9"], "the prompt is not valid UTF-8 text"),  # what Python makes of bytes b"caf\xe9"
        (["--prompts", str(tmp_path / "latin1.txt")], "is not UTF-8 text (byte 3"),
        (["--prompts", str(tmp_path / "binary.txt")], "is not UTF-8 text"),
    ]  # fmt: skip
    for args, message in cases:
        result = _run([*base, *args, "--out", str(tmp_path / "out")])
        assert result.exit_code in (1, 2) and message in result.output, (args, result.output)
        assert "Error: " in result.output and "Traceback" not in result.output
        assert not (tmp_path / "out").exists()
    empty = _run([*base, "--prompt", "x", "--out", ""])
    assert empty.exit_code == 2 and "'--out': is empty" in empty.output
    locked = _run([*base, "--prompt", "x", "--out", str(read_only_dir / "out")])
    assert locked.exit_code == 1 and "cannot write in output folder" in locked.output


def test_cli_refuses_to_overwrite_an_earlier_sample(tmp_path):
    args = ["--preset", "tiny", "--prompt", "a cat", "--frames", "2", "--block", "1", "--steps", "1"]
    assert _run([*args, "--out", str(tmp_path)]).exit_code == 0
    before = (tmp_path / "000_a_cat.mp4").read_bytes()
    again = _run([*args, "--seed", "5", "--out", str(tmp_path)])
    assert again.exit_code == 1 and "holds an earlier sample (samples.json, 000_a_cat.mp4)" in again.output
    assert (tmp_path / "000_a_cat.mp4").read_bytes() == before
    other = _run([*args[:3], "a dog", *args[4:], "--out", str(tmp_path)])  # another prompt's file: still refused
    assert other.exit_code == 1 and "samples.json" in other.output
    assert _run([*args, "--seed", "5", "--out", str(tmp_path), "--overwrite"]).exit_code == 0
    assert (tmp_path / "000_a_cat.mp4").read_bytes() != before


def _noise_blocks(seed: int, count: int, block: int) -> torch.Tensor:
    """The initial noise of ``count`` blocks as :class:`full.sampler.NoiseSource` draws it."""
    g = torch.Generator().manual_seed(seed)
    torch.randint(0, 2**62, (1,), generator=g)  # the draw that seeds the re-noising stream
    return torch.cat([torch.randn(1, block, TINY.latent_channels, 8, 8, generator=g) for _ in range(count)], dim=1)


@pytest.mark.parametrize("block,window", [(1, 2), (2, 1)])
def test_rolling_sampler_with_a_sink_equals_windowed_plus_sink_block_causal_masks(components, embeds, block, window):
    """One step per block: block j is its noise minus the velocity of one full-sequence pass over [the clean
    frames before it ; its noise] under the mask 'block 0 ∪ the last `window` blocks' (no cache involved)."""
    from cf_ref.masks import block_causal_visibility, token_mask
    from cf_ref.schedule import timestep_from_sigma

    frames = 6
    config = SampleConfig(height=TINY.height, width=TINY.width, num_frames=frames, block_size=block, steps=1,
                          window=window, sink=True, seed=2)  # fmt: skip
    result = generate(components, embeds, config, decode=False)
    noise, model = _noise_blocks(2, frames // block, block), components.transformer
    text, x0 = model.text_context(embeds), torch.empty(1, 0, TINY.latent_channels, 8, 8)
    with torch.no_grad():
        for j in range(frames // block):
            n = (j + 1) * block
            vis = block_causal_visibility(n, block, window)
            q, k = torch.arange(n)[:, None] // block, torch.arange(n)[None, :] // block
            vis = vis | ((k == 0) & (k <= q))
            seq = torch.cat([x0, noise[:, j * block : n]], dim=1)
            t = timestep_from_sigma(torch.cat([torch.zeros(1, j * block), torch.ones(1, block)], dim=1))
            v = model.run(seq, t, text, torch.arange(n), token_mask(vis, 16))[:, -block:]
            x0 = torch.cat([x0, noise[:, j * block : n] - v.float()], dim=1)
    torch.testing.assert_close(result.latents, x0, rtol=0, atol=1e-5)


def test_one_and_two_step_students_roll_with_a_sink_in_bounded_memory(components, embeds):
    """Causal Forcing++'s 1-/2-step students (first block on 4 steps) with a rolling cache and an adjacent sink:
    the first block is the 4-step one, the cache never holds more than sink + window, and with ADJACENT positions
    the stream differs from FIXED ones only after the window starts evicting."""
    from full.sampler import BlockSampler, NoiseSource

    base = dict(height=TINY.height, width=TINY.width, num_frames=30, block_size=1, first_block_steps=4, window=3)
    for steps in (1, 2):
        fixed = SampleConfig(**base, steps=steps, sink=True, seed=3)
        adjacent = SampleConfig(**base, steps=steps, sink=True, sink_positions="adjacent", seed=3)
        plain = generate(
            components, embeds, SampleConfig(**{**base, "window": None}, steps=steps, seed=3), decode=False
        )
        a = generate(components, embeds, fixed, decode=False).latents
        b = generate(components, embeds, adjacent, decode=False).latents
        torch.testing.assert_close(a[:, :1], plain.latents[:, :1], rtol=0, atol=0)  # the 4-step first block
        torch.testing.assert_close(a[:, :4], b[:, :4], rtol=0, atol=1e-6)  # nothing evicted yet: same positions
        assert not torch.allclose(a[:, 4:], b[:, 4:])
    sampler = BlockSampler(components, adjacent, NoiseSource.from_seed(0, "cpu"), decode=False)
    sampler.set_text(embeds)
    held = set()
    for _ in range(12):
        sampler.next_block()
        held.add(sampler.cache.cached_frames)
    assert max(held) == 1 + 2 and sampler.cache.sink_shift() == 12 - 3


@torch.no_grad()
@pytest.mark.parametrize("window", [1, 2])
def test_guided_sampler_rolls_with_the_window(components, embeds, window):
    """With CFG the sampler's model is the guided one (cond and uncond in one batch): it is built with the configured
    window, so its own cache rolls like the sampler's, and the video equals a guided rollout over that cache."""
    negative = components.text.encode([""])
    config = SampleConfig(height=TINY.height, width=TINY.width, num_frames=4, block_size=1, steps=2, window=window,
                          guidance_scale=3.0, seed=5)  # fmt: skip
    sampler = BlockSampler(components, config, NoiseSource.from_seed(5, components.device), decode=False)
    sampler.set_text(embeds, negative)
    guided = sampler.model.inner
    assert guided.new_cache().capacity_frames == sampler.cache.capacity_frames == window - 1
    video = torch.cat([sampler.next_block().latents for _ in range(4)], dim=1)
    g = torch.Generator().manual_seed(5)
    renoise = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
    noise = torch.cat([torch.randn(1, 1, TINY.latent_channels, 8, 8, generator=g) for _ in range(4)], dim=1)
    cache = guided.new_cache()
    ref = few_step_rollout(guided, noise, 1, config.sigmas(), cache, generator=renoise)
    torch.testing.assert_close(video, ref.x0, rtol=0, atol=1e-5)
    unbounded = generate(components, embeds, SampleConfig(**{**config.__dict__, "window": None}), decode=False,
                         negative_embeds=negative)  # fmt: skip
    assert not torch.allclose(video, unbounded.latents, atol=1e-3)  # the window changes the video
