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


def _samples(config, generator, batch, grad=False):
    shape = latent_shape(config, generator.model)
    rnd = step_random(config, CTX, "test", 0, 0, "generator")
    with torch.set_grad_enabled(grad):
        return dmd.generator_samples(generator, config, batch, rnd, shape)


def test_one_step_student_rolls_its_first_block_on_the_four_step_list(run):
    """dmd.first_block_steps=4 with a 1-step student: block 0's exit is drawn on [0, 4) (one shared draw first), the
    others stay on the 1-step list; the samples equal the rollout with those lists and exits."""
    from cf_ref.rollout import few_step_rollout
    from cf_ref.schedule import FewStepSchedule
    from full.stages.fields import kv_blockwise

    one = FewStepSchedule((1000.0,), run.schedule.shift, run.schedule.ode_steps)
    config = dataclasses.replace(run, schedule=one, dmd=dataclasses.replace(run.dmd, first_block_steps=4))
    generator = Runner(build_model(config, final_weights(config, Stage.ODE), "generator"))
    batch = TensorSet(config.data.latents).fetch([0, 1])
    x = _samples(config, generator, batch)
    b, shape = config.model.block_size, latent_shape(config, generator.model)
    rnd = step_random(config, CTX, "test", 0, 0, "generator")
    noise = rnd.normal((2, *shape), batch["text"].device)
    first_exit = int(torch.randint(0, 4, (1,), generator=rnd.shared))
    four = FewStepSchedule.uniform(4, config.schedule.shift).student_sigmas(torch.float32)
    bw = kv_blockwise(generator.model, batch["text"], b)
    exits = [first_exit] + [0] * (shape[0] // b - 1)
    with torch.no_grad():
        ref = few_step_rollout(bw, noise, b, torch.tensor([1.0]), bw.new_cache(), exits, generator=rnd.device,
                               first_sigmas=four)  # fmt: skip
    torch.testing.assert_close(x, ref.x0, rtol=0, atol=1e-6)
    plain = _samples(dataclasses.replace(config, dmd=run.dmd), generator, batch)
    assert not torch.allclose(x[:, :b], plain[:, :b]) or first_exit == 0


def test_image_to_video_training_keeps_the_data_frame_zero_and_conditions_the_rest_on_it(run):
    config = dataclasses.replace(run, dmd=dataclasses.replace(run.dmd, image_to_video=True))
    assert dmd.text_source(config).kind is SetKind.LATENTS
    generator = Runner(build_model(config, final_weights(config, Stage.ODE), "generator"))
    batch = TensorSet(config.data.latents).fetch([0, 1])
    x = _samples(config, generator, batch, grad=True)
    assert torch.equal(x[:, :1].detach(), batch["latents"][:, :1]) and x.requires_grad
    other = dict(batch, latents=batch["latents"].flip(0))  # another first frame for each video
    y = _samples(config, generator, other)
    assert torch.equal(y[:, :1], other["latents"][:, :1])
    assert (x[:, 1:].detach() - y[:, 1:]).abs().max() > 1e-4  # the generated frames see frame 0
    grads = torch.autograd.grad(x[:, 1:].sum(), [p for p in generator.parameters() if p.requires_grad][:1])
    assert grads[0].abs().sum() > 0


@pytest.mark.parametrize("cache_gradient", ["none", "published-leak"])
def test_the_rollout_on_the_static_cache_equals_the_dynamic_one(run, cache_gradient):
    """dmd.cache=static: the self-forcing rollout's samples and the generator's gradients (exit calls, context noise,
    and with published-leak the gradient through the cache) equal the dynamic cache's."""
    from cf_ref.rollout import CacheGradient

    generator = Runner(build_model(run, final_weights(run, Stage.ODE), "generator"))
    batch = TensorSet(run.data.latents).fetch([0, 1])
    weights = torch.randn(2, *latent_shape(run, generator.model), generator=torch.Generator().manual_seed(3))

    def samples_and_grads(kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        options = dict(cache=kind, cache_gradient=CacheGradient(cache_gradient), context_noise=0.1)
        config = dataclasses.replace(run, dmd=dataclasses.replace(run.dmd, **options))
        generator.model.zero_grad()
        x = _samples(config, generator, batch, grad=True)
        (x * weights).sum().backward()
        grads = [p.grad.flatten() for p in generator.parameters() if p.grad is not None]
        return x.detach(), torch.cat(grads)

    x_dynamic, g_dynamic = samples_and_grads("dynamic")
    x_static, g_static = samples_and_grads("static")
    assert g_dynamic.abs().sum() > 0
    torch.testing.assert_close(x_static, x_dynamic, rtol=0, atol=1e-5)
    torch.testing.assert_close(g_static, g_dynamic, rtol=1e-4, atol=1e-6)
