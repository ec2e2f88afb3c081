"""full.stages.dmd: the critic learns; a generator step moves the samples against the DMD gradient; the prompt
source follows the generator input."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cf_ref.distill.dmd import dmd_gradient
from cf_ref.masks import AttentionMode
from cf_ref.recipes import GeneratorInput
from cf_ref.schedule import interpolate, x0_from_velocity
from full.data import DataError, SetKind, TensorSet
from full.distributed import Runner
from full.recipes import Stage
from full.stage_inputs import final_weights
from full.stages import dmd
from full.stages.batches import latent_shape
from full.stages.fields import guided_field, velocity_field
from full.stages.models import base_model_dir, build_model, load_model
from full.stages.randomness import step_random
from tests.full.stages.tiny_run import CTX, decrease


def test_critic_loss_decreases(run):
    first, last = decrease(f"{run.out}/dmd/metrics.jsonl", "critic_loss")
    assert last < 0.8 * first, (first, last)


def test_dmd_generator_update_moves_samples_against_the_dmd_gradient(run):
    """One small SGD step on the generator loss moves the rollout's samples along −g (first order)."""
    config = dataclasses.replace(run, dmd=dataclasses.replace(run.dmd, guidance_scale=3.0))
    generator = Runner(build_model(config, final_weights(config, Stage.ODE), "generator"))
    real = Runner(load_model(base_model_dir(config), "real"))
    critic_model = load_model(base_model_dir(config), "critic")
    with torch.no_grad():
        for p in critic_model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    critic = Runner(critic_model)
    data = TensorSet(config.data.latents)
    batch = data.fetch([0, 1])
    shape = latent_shape(config, generator.model)
    b = config.model.block_size

    def sample(grad: bool):
        rnd = step_random(config, CTX, "test", 0, 0, "generator")
        with torch.set_grad_enabled(grad):
            return dmd.generator_samples(generator, config, batch, rnd, shape), rnd

    x, rnd = sample(True)
    sigma = dmd.score_sigmas(config, x.shape[0], x.shape[1], rnd, x.device)
    eps = rnd.normal(x.shape, x.device)
    with torch.no_grad():
        x_s = interpolate(x.detach(), eps, sigma)
        neg = data.negative[None].expand(2, -1, -1)
        real_v = guided_field(real, batch["text"], neg, 3.0, AttentionMode.BIDIRECTIONAL, b)(x_s, sigma)
        fake_v = velocity_field(critic, batch["text"], AttentionMode.BIDIRECTIONAL, b)(x_s, sigma)
        g = dmd_gradient(x.detach(), x0_from_velocity(x_s, real_v, sigma), x0_from_velocity(x_s, fake_v, sigma))
    loss = 0.5 * torch.nn.functional.mse_loss(x, (x - g).detach())
    loss.backward()
    with torch.no_grad():
        for p in generator.parameters():
            if p.grad is not None:
                p.sub_(1e-3 * p.grad)
    x_new, _ = sample(False)
    step = (x_new - x.detach()).flatten()
    assert float(step.norm()) > 0
    cosine = torch.dot(step, g.flatten()) / (step.norm() * g.norm())
    assert float(cosine) < -0.1, float(cosine)


def test_prompts_come_from_the_latent_set_with_data_context(run):
    data_context = dataclasses.replace(
        run, dmd=dataclasses.replace(run.dmd, generator_input=GeneratorInput.DATA_CONTEXT)
    )
    assert dmd.text_source(data_context).kind is SetKind.LATENTS
    no_latents = dataclasses.replace(data_context, data=dataclasses.replace(run.data, latents=None))
    with pytest.raises(DataError, match="generator_input=data needs a prepared latents set: set data.latents"):
        dmd.text_source(no_latents)
    nothing = dataclasses.replace(run, data=dataclasses.replace(run.data, latents=None, prompts=None))
    with pytest.raises(DataError, match="dmd needs prompts"):
        dmd.text_source(nothing)
