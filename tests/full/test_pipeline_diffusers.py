"""CausalForcingPipeline (a diffusers DiffusionPipeline) on the tiny preset: output types, equality with
generate, save/load round trip, loading a Wan folder with a converted student, the stream entry point."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
from diffusers.pipelines.wan.pipeline_output import WanPipelineOutput

from full.model import CausalWanTransformer3DModel
from full.pipeline_diffusers import CausalForcingPipeline
from full.sampler import SampleConfig, generate
from full.tiny import TINY, tiny_transformer, transformer_kwargs

PROMPT = "a red ball bouncing"


@pytest.fixture(scope="module")
def pipe(tiny_components):
    return CausalForcingPipeline.from_components(tiny_components, 3, TINY.height, TINY.width)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_output_types_follow_diffusers_wan(pipe):
    kw = dict(num_frames=9, num_inference_steps=1)
    out = pipe(PROMPT, generator=seeded(), **kw)
    assert isinstance(out, WanPipelineOutput)
    assert out.frames.shape == (1, 9, TINY.height, TINY.width, 3) and out.frames.dtype == np.float32
    assert 0 <= out.frames.min() and out.frames.max() <= 1
    pt = pipe(PROMPT, generator=seeded(), output_type="pt", **kw).frames
    assert pt.shape == (1, 9, 3, TINY.height, TINY.width)
    np.testing.assert_allclose(out.frames, pt.permute(0, 1, 3, 4, 2).numpy(), atol=1e-6)
    pil = pipe(PROMPT, generator=seeded(), output_type="pil", **kw).frames
    assert len(pil) == 1 and len(pil[0]) == 9 and isinstance(pil[0][0], PIL.Image.Image)
    assert pil[0][0].size == (TINY.width, TINY.height)
    latent = pipe(PROMPT, generator=seeded(), output_type="latent", return_dict=False)[0]
    assert latent.shape == (1, TINY.latent_channels, 21, 8, 8)  # default 81 frames, [B, C, F, h, w]
    with pytest.raises(ValueError, match="output_type must be one of"):
        pipe(PROMPT, output_type="gif", **kw)


def test_frames_equal_generate_for_the_same_seed(pipe, tiny_components):
    config = SampleConfig(height=TINY.height, width=TINY.width, num_frames=6, steps=2, first_block_steps=4, seed=9)
    ref = generate(tiny_components, tiny_components.text.encode([PROMPT]), config)
    kw = dict(num_frames=21, num_inference_steps=2, first_block_steps=4, generator=seeded(9))
    latent = pipe(PROMPT, output_type="latent", **kw).frames
    torch.testing.assert_close(latent, ref.latents.permute(0, 2, 1, 3, 4), rtol=0, atol=0)
    video = pipe(PROMPT, output_type="pt", **{**kw, "generator": seeded(9)}).frames
    torch.testing.assert_close(video, ((ref.video + 1) / 2).clamp(0, 1), rtol=0, atol=1e-5)
    # batches: num_videos_per_prompt repeats the prompt; CFG with a negative prompt is generate's CFG
    two = pipe([PROMPT, "a cube"], num_videos_per_prompt=2, output_type="latent", num_frames=9, generator=seeded())
    assert two.frames.shape[0] == 4
    cfg = SampleConfig(height=TINY.height, width=TINY.width, num_frames=3, steps=1, guidance_scale=3.0, seed=2)
    neg = tiny_components.text.encode(["blurry"])
    ref = generate(tiny_components, tiny_components.text.encode([PROMPT]), cfg, decode=False, negative_embeds=neg)
    got = pipe(PROMPT, negative_prompt="blurry", guidance_scale=3.0, num_frames=9, num_inference_steps=1,
               output_type="latent", generator=seeded(2)).frames  # fmt: skip
    torch.testing.assert_close(got, ref.latents.permute(0, 2, 1, 3, 4), rtol=0, atol=0)


def test_save_and_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "CausalForcingPipeline" and index["block_size"] == 3
    assert index["transformer"] == ["diffusers", "WanTransformer3DModel"]  # stock diffusers loads the folder
    assert isinstance(WanTransformer3DModel.from_pretrained(tmp_path / "transformer"), WanTransformer3DModel)
    loaded = CausalForcingPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.transformer, CausalWanTransformer3DModel)
    assert (loaded.config.default_height, loaded.config.max_sequence_length) == (TINY.height, TINY.text_length)
    a = pipe(PROMPT, num_frames=9, num_inference_steps=2, generator=seeded(4)).frames
    b = loaded(PROMPT, num_frames=9, num_inference_steps=2, generator=seeded(4)).frames
    np.testing.assert_array_equal(a, b)


def test_a_wan_folder_with_a_converted_student(pipe, tmp_path):
    """A diffusers Wan2.1 folder (stock transformer, a scheduler we do not use) + a student's DiT folder."""
    stock = WanTransformer3DModel(**transformer_kwargs())
    stock.load_state_dict(pipe.transformer.state_dict())
    WanPipeline(pipe.tokenizer, pipe.text_encoder, pipe.vae, UniPCMultistepScheduler(), stock).save_pretrained(
        tmp_path / "wan"
    )
    tiny_transformer(seed=7).save_pretrained(tmp_path / "student")
    student = CausalWanTransformer3DModel.from_pretrained(tmp_path / "student")
    loaded = CausalForcingPipeline.from_pretrained(tmp_path / "wan", transformer=student)
    assert loaded.transformer is student
    kw = dict(num_frames=9, num_inference_steps=1, height=TINY.height, width=TINY.width, output_type="latent")
    ours = CausalForcingPipeline(pipe.tokenizer, pipe.text_encoder, pipe.vae, student, max_sequence_length=16)
    torch.testing.assert_close(
        loaded(PROMPT, generator=seeded(), **kw).frames, ours(PROMPT, generator=seeded(), **kw).frames
    )
    # without a student: the Wan folder's own (stock) transformer, made causal in place
    base = CausalForcingPipeline.from_pretrained(tmp_path / "wan")
    assert isinstance(base.transformer, CausalWanTransformer3DModel)
    torch.testing.assert_close(
        base(PROMPT, generator=seeded(), **kw).frames, pipe(PROMPT, generator=seeded(), **kw).frames
    )


def test_stream_entry_point_yields_the_same_frames(pipe):
    video = pipe(PROMPT, num_frames=21, num_inference_steps=2, output_type="pt", generator=seeded(3)).frames
    stream = pipe.stream(PROMPT, num_inference_steps=2, generator=seeded(3), max_blocks=2)
    blocks = list(stream)
    stream.close()
    streamed = torch.cat([(b.video + 1) / 2 for b in blocks], dim=1).clamp(0, 1)
    torch.testing.assert_close(streamed, video[:, : streamed.shape[1]], rtol=0, atol=1e-5)


def test_model_cpu_offload_runs_the_hooks(tiny_components):
    pipe = CausalForcingPipeline.from_components(tiny_components, 3, TINY.height, TINY.width)
    ref = pipe(PROMPT, num_frames=9, num_inference_steps=1, generator=seeded()).frames
    pipe.enable_model_cpu_offload(device="cpu")  # no GPU here: the hook chain runs, the device stays the CPU
    try:
        np.testing.assert_array_equal(pipe(PROMPT, num_frames=9, num_inference_steps=1, generator=seeded()).frames, ref)
        with pytest.raises(ValueError, match="model CPU offload applies to __call__ only"):
            pipe.stream(PROMPT)
    finally:
        pipe.remove_all_hooks()


def test_bad_arguments(pipe):
    for kwargs, message in [
        (dict(num_frames=10), "1 \\+ 4k"),
        (dict(num_frames=25), "use 21 or 33"),
        (dict(num_frames=9, num_inference_steps=0), "steps must be >= 1"),
        (dict(num_frames=9, height=72), "multiple of 16x16"),
        (dict(num_frames=9, guidance_scale=3.0, prompt_embeds=torch.zeros(1, 16, TINY.text_dim)), "exactly one"),
    ]:
        with pytest.raises(ValueError, match=message):
            pipe(PROMPT, **kwargs)
    with pytest.raises(ValueError, match="exactly one of prompt or prompt_embeds"):
        pipe(None, num_frames=9)
    with pytest.raises(ValueError, match="1 negative prompts for 2 prompts"):
        pipe(["a", "b"], negative_prompt=["x"], guidance_scale=2.0, num_frames=9)


def test_prompt_embeds_stand_in_for_the_prompt(pipe):
    embeds, negative = pipe.encode_prompt(PROMPT, "blurry", do_classifier_free_guidance=True)
    assert embeds.shape == (1, TINY.text_length, TINY.text_dim) and negative.shape == embeds.shape
    kw = dict(num_frames=9, num_inference_steps=1, guidance_scale=2.0, output_type="latent")
    by_text = pipe(PROMPT, negative_prompt="blurry", generator=seeded(), **kw).frames
    by_embeds = pipe(prompt_embeds=embeds, negative_prompt_embeds=negative, generator=seeded(), **kw).frames
    torch.testing.assert_close(by_embeds, by_text, rtol=0, atol=0)
    with pytest.raises(TypeError, match="WanTransformer3DModel"):
        CausalForcingPipeline(pipe.tokenizer, pipe.text_encoder, pipe.vae, torch.nn.Linear(2, 2))
