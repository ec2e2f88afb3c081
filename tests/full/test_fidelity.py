"""Settings of the full track checked against what the authors' code computes (thu-ml/Causal-Forcing,
guandeh17/Self-Forcing), each against an independent computation on a tiny model."""

from __future__ import annotations

import dataclasses

import torch

from cf_ref.granularity import Granularity
from cf_ref.masks import AttentionMode
from cf_ref.recipes import GeneratorInput
from cf_ref.rollout import CacheGradient
from cf_ref.schedule import few_step_sigmas, x0_from_velocity
from full.config import RunConfig, build_config
from full.distributed import DistContext, Runner
from full.stages import dmd
from full.stages.randomness import step_random


def test_dmd_real_score_is_the_authors_guided_x0(model, latents, text):
    """model/dmd.py: ``pred_real = x0_cond + (x0_cond - x0_uncond) * guidance_scale`` with guidance_scale 3.0."""
    config = RunConfig()  # the published setting
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, block_size=3))
    negative = torch.randn(text.shape, generator=torch.Generator().manual_seed(3))
    sigma = torch.tensor([[0.7] * 6, [0.3] * 6])  # DMD levels: one per video
    with torch.no_grad():
        v = dmd.real_score_field(Runner(model), config, text, negative)(latents, sigma)

        def x0(prompt):
            return x0_from_velocity(
                latents, model.velocity(latents, sigma, prompt, mode=AttentionMode.BIDIRECTIONAL), sigma
            )

        x0_cond, x0_uncond = x0(text), x0(negative)
    authors = x0_cond + (x0_cond - x0_uncond) * 3.0
    ours = x0_from_velocity(latents, v, sigma)
    assert torch.allclose(ours, authors, atol=1e-5), float((ours - authors).abs().max())


def test_bidirectional_pair_recipes_draw_one_ode_state_per_block():
    """Self Forcing's model/ode_regression.py picks the trajectory state per block (``uniform_timestep=False``);
    Causal Forcing's causal ODE picks one per video (``uniform_timestep=True``)."""
    expected = {
        "causal-forcing": Granularity.SAMPLE,
        "self-forcing": Granularity.BLOCK,
        "causvid": Granularity.BLOCK,
    }
    for recipe, granularity in expected.items():
        assert build_config(preset="tiny", recipe=recipe).ode.index_granularity is granularity, recipe
    # a user setting still wins over the recipe's
    c = build_config(preset="tiny", recipe="self-forcing", overrides=["ode.index_granularity=sample"])
    assert c.ode.index_granularity is Granularity.SAMPLE


def test_causvid_generator_input_is_noised_data_in_one_teacher_forced_pass(model, latents, text):
    """model/causvid.py (Self-Forcing): each block of a data video is noised to a few-step level drawn per block and
    the generator denoises it in one call; here with the clean data of earlier blocks as context (teacher forcing)."""
    config = RunConfig()
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, block_size=3),
        dmd=dataclasses.replace(config.dmd, generator_input=GeneratorInput.DATA_CONTEXT),
    )
    ctx = DistContext()
    shape = tuple(latents.shape[1:])
    batch = {"text": text, "latents": latents}
    x = dmd.generator_samples(Runner(model), config, batch, step_random(config, ctx, "t", 0, 0, "g"), shape)
    assert x.requires_grad  # the one call carries the generator's gradient

    rnd = step_random(config, ctx, "t", 0, 0, "g")  # the same draws, in the documented order
    noise = torch.randn(latents.shape, generator=rnd.device)
    per_block = torch.randint(0, 4, (2, 2), generator=rnd.cpu)
    levels = few_step_sigmas((1000, 750, 500, 250), 5.0).float()
    sigma = levels[per_block].repeat_interleave(3, dim=1)  # [B, F], constant within a block
    noisy = (1 - sigma[..., None, None, None]) * latents + sigma[..., None, None, None] * noise
    with torch.no_grad():
        v = model.velocity(noisy, sigma, text, mode=AttentionMode.TEACHER_FORCING, block_size=3, clean=latents)
    expected = noisy - sigma[..., None, None, None] * v
    assert torch.allclose(x.detach(), expected, atol=1e-5), float((x.detach() - expected).abs().max())


def _with_dmd(**changes) -> RunConfig:
    config = RunConfig()
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, block_size=3),
        dmd=dataclasses.replace(config.dmd, **changes),
    )


def _authors_wrapper_sigma(t: float, shift: float) -> float:
    """``WanDiffusionWrapper._convert_flow_pred_to_x0``'s σ: its FlowMatchScheduler(shift, sigma_min=0,
    extra_one_step=True) with 1000 steps (float32), the point nearest to the timestep t, looked up in float64."""
    sigmas = torch.linspace(1.0, 0.0, 1001, dtype=torch.float32)[:-1]
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    return float(sigmas.double()[(sigmas.double() * 1000 - t).abs().argmin()])


def test_dmd_score_shift_8_reads_both_scores_like_the_authors_wrappers(model, latents, text):
    """model/base.py builds the real and fake score wrappers without model_kwargs, so they convert velocity to x0
    with the σ of their shift-8 grid; ``dmd.score_shift=8`` reproduces that, the default keeps the exact σ."""
    negative = torch.randn(text.shape, generator=torch.Generator().manual_seed(3))
    sigma = torch.tensor([[0.02] * 6, [0.3] * 6])
    runner = Runner(model)
    with torch.no_grad():
        guided = dmd.real_score_field(runner, _with_dmd(), text, negative)(latents, sigma)
        plain = dmd.fake_score_field(runner, _with_dmd(), text)(latents, sigma)
        config8 = _with_dmd(score_shift=8.0)
        guided8 = dmd.real_score_field(runner, config8, text, negative)(latents, sigma)
        plain8 = dmd.fake_score_field(runner, config8, text)(latents, sigma)
    tilde = torch.tensor([[_authors_wrapper_sigma(1000 * float(s), 8.0)] * 6 for s in sigma[:, 0]])
    for exact, on_grid in ((guided, guided8), (plain, plain8)):
        expected = latents - tilde[..., None, None, None] * exact  # the wrapper's x0 of the same velocity
        torch.testing.assert_close(x0_from_velocity(latents, on_grid, sigma), expected, atol=1e-5, rtol=1e-5)
    assert float(tilde[0, 0]) / 0.02 - 1 > 0.17  # the DMD floor moves 17.5 % on the shift-8 grid


def test_dmd_cache_gradient_option_reaches_the_rollout(model, text):
    """``dmd.cache_gradient=published-leak`` changes the generator's gradient (later blocks reach earlier exit calls),
    never its samples."""
    shape = (6, model.config.in_channels, 8, 8)
    runner = Runner(model)

    def samples_and_grad(config):
        model.zero_grad()
        x = dmd.generator_samples(
            runner, config, {"text": text}, step_random(config, DistContext(), "t", 0, 0, "g"), shape
        )
        w = torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
        (x[:, 3:] * w[:, 3:]).sum().backward()
        return x.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    x_none, g_none = samples_and_grad(_with_dmd())
    x_leak, g_leak = samples_and_grad(_with_dmd(cache_gradient=CacheGradient.PUBLISHED_LEAK))
    model.zero_grad()
    assert torch.equal(x_leak, x_none)
    assert (g_leak - g_none).norm() > 1e-4 * g_none.norm()
