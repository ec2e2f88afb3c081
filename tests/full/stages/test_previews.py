"""full.stages.previews: in-training sampling — the AR teacher's guided KV-cached sampler against a plain Euler
integration, the student's few-step sampler against the model's own blockwise rollout, and the preview files."""

from __future__ import annotations

import dataclasses

import torch

from cf_ref.io import load_tensors
from cf_ref.masks import AttentionMode
from cf_ref.rollout import few_step_rollout
from cf_ref.solvers import Method, integrate
from full.config import build_config
from full.data import SetKind, TensorSet
from full.distributed import DistContext, Runner
from full.stages.fields import guided_field
from full.stages.previews import ar_teacher_sample, few_step_sample, preview_sampler
from full.synthetic import SyntheticSpec, write_synthetic_latents


def one_block_config(frames: int):
    config = build_config(preset="tiny")
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, block_size=frames),
        video=dataclasses.replace(config.video, latent_frames=frames),
    )


def test_ar_teacher_sample_of_one_block_is_guided_euler_on_the_grid(model, latents, text):
    """With one block there is no history: the KV-cached sampler integrates the guided field of the frames alone."""
    config = one_block_config(latents.shape[1])
    negative = torch.randn(text.shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = ar_teacher_sample(Runner(model), config, text, negative, latents, 2.5)
        field = guided_field(Runner(model), text, negative, 2.5, AttentionMode.BIDIRECTIONAL, latents.shape[1])
        expected = integrate(field, latents, config.schedule.grid(torch.float32), Method.EULER).end
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_few_step_sample_is_the_models_few_step_rollout(model, latents, text):
    config = one_block_config(latents.shape[1])
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, block_size=3))
    with torch.no_grad():
        torch.manual_seed(5)  # the re-noising between steps draws from torch's generator
        ours = few_step_sample(Runner(model), config, text, latents)
        torch.manual_seed(5)
        bw = model.blockwise(text, 3)
        expected = few_step_rollout(bw, latents, 3, config.schedule.student_sigmas(torch.float32), bw.new_cache()).x0
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-6)


def test_previews_are_the_first_prompts_with_fixed_noise(model, tmp_path):
    config = dataclasses.replace(
        build_config(preset="tiny"), logging=dataclasses.replace(build_config(preset="tiny").logging, sample_count=2)
    )
    data = TensorSet(
        write_synthetic_latents(
            tmp_path / "set", SyntheticSpec(count=3, text_length=5, text_dim=model.config.text_dim)
        ),
        SetKind.LATENTS,
    )
    calls = []

    def generate(text, negative, noise):
        calls.append((text, negative, noise))
        return noise * 0.5

    sample = preview_sampler(config, DistContext(), data, (4, 4, 8, 8), generate)
    sample(1, tmp_path / "a")
    sample(2, tmp_path / "b")
    (t1, n1, z1), (_, _, z2) = calls
    assert torch.equal(t1, data.fetch([0, 1])["text"]) and torch.equal(n1[1], data.negative)
    assert z1.shape == (2, 4, 4, 8, 8) and torch.equal(z1, z2)  # the same noise every time
    assert torch.equal(load_tensors(tmp_path / "a" / "latents.safetensors")["latents"], z1 * 0.5)
    assert sorted(p.name for p in (tmp_path / "b").glob("*.mp4")) == ["sample-00.mp4", "sample-01.mp4"]
    assert (tmp_path / "a" / "captions.txt").read_text().splitlines() == data.captions[:2]
