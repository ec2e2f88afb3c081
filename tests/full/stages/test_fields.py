"""full.stages.fields: the guided field is CFG of two separate model calls; the KV-cache adapter of the stages gives
what the model's own blockwise interface gives."""

from __future__ import annotations

import torch

from cf_ref.masks import AttentionMode
from cf_ref.rollout import few_step_rollout
from cf_ref.schedule import FewStepSchedule
from full.distributed import Runner
from full.stages.fields import guided_field, kv_blockwise, velocity_field

TF = AttentionMode.TEACHER_FORCING


def test_guided_field_is_cfg_of_a_conditional_and_an_unconditional_call(model, latents, text):
    negative = torch.randn(text.shape, generator=torch.Generator().manual_seed(3))
    sigma = torch.rand(2, 6, generator=torch.Generator().manual_seed(4))
    clean = latents.flip(1)
    with torch.no_grad():
        guided = guided_field(Runner(model), text, negative, 4.0, TF, 3, clean)(latents, sigma)
        cond = model.velocity(latents, sigma, text, mode=TF, block_size=3, clean=clean)
        uncond = model.velocity(latents, sigma, negative, mode=TF, block_size=3, clean=clean)
        plain = velocity_field(Runner(model), text, TF, 3, clean)(latents, sigma)
        unguided = guided_field(Runner(model), text, negative, 1.0, TF, 3, clean)(latents, sigma)
    torch.testing.assert_close(guided, uncond + 4.0 * (cond - uncond), atol=1e-5, rtol=1e-5)
    assert torch.equal(plain, cond) and torch.equal(unguided, cond)  # scale 1: the conditional field alone


def test_kv_blockwise_equals_the_models_blockwise_interface(model, latents, text):
    """Computing the prompt's cross-attention K/V inside each block's forward changes nothing numerically."""
    noise = latents
    sigmas = FewStepSchedule().student_sigmas(torch.float32)
    with torch.no_grad():
        ours = kv_blockwise(model, text, 3)
        theirs = model.blockwise(text, 3)
        a = few_step_rollout(ours, noise, 3, sigmas, ours.new_cache(), generator=torch.Generator().manual_seed(5)).x0
        b = few_step_rollout(theirs, noise, 3, sigmas, theirs.new_cache(), generator=torch.Generator().manual_seed(5))
    b = b.x0
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
