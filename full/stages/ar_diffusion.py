r"""Stage ``ar-diffusion``: the AR diffusion teacher, trained from the bidirectional model's weights.

For clean latents :math:`x_0` ``[B, F, C, H, W]`` with text, per-block levels
:math:`\sigma \sim \mathrm{shift}(U[0,1])` ``[B, F]`` (one draw per block), noise ε and
:math:`x_\sigma = (1-\sigma)x_0 + \sigma\varepsilon`:

.. math::  \mathcal L = \operatorname{mean}_{b,f}\; w(\sigma_{bf})\,
           \lVert v_\theta(x_\sigma, \sigma \mid \text{ctx}) - (\varepsilon - x_0)\rVert^2 / |S|

with the schedule's weighting ``w`` (:func:`cf_ref.losses.loss_weight`). The context is

* ``forcing=teacher`` (published): the ground-truth clean frames, in the teacher-forcing layout
  ``[clean ; noisy]`` with :func:`cf_ref.masks.teacher_forcing_visibility` — block j's noisy frames see the
  clean frames of blocks < j and their own block;
* ``forcing=diffusion`` (ablation): no clean copy; block-causal attention over the noisy frames themselves,
  each block at its own level (diffusion forcing).
"""

from __future__ import annotations

from torch import Tensor

from cf_ref.granularity import Granularity, sample_training_sigmas
from cf_ref.losses import LossWeighting, flow_matching_loss, loss_weight
from cf_ref.masks import AttentionMode
from cf_ref.recipes import Forcing
from cf_ref.schedule import interpolate
from full.config import RunConfig
from full.data import SetKind
from full.distributed import DistContext
from full.recipes import Stage
from full.stage_inputs import stage_inputs
from full.stages.batches import check_text, latent_shape, open_set, stage_batches
from full.stages.fields import velocity_field
from full.stages.models import build_model, trainable
from full.stages.previews import ar_teacher_sample, preview_sampler
from full.stages.randomness import StepRandom, step_random
from full.train import StagePlan, Trainee, Update, make_optimizer

STAGE = Stage.AR_DIFFUSION


def denoising_loss(
    runner,
    batch: dict[str, Tensor],
    rnd: StepRandom,
    mode: AttentionMode,
    granularity: Granularity,
    weighting: LossWeighting,
    block_size: int,
    shift: float,
    clean: Tensor | None,
) -> Tensor:
    """The weighted flow-matching loss of the module doc on a batch ``{latents [B, F, C, H, W], text}``."""
    x0, text = batch["latents"], batch["text"]
    sigma = sample_training_sigmas(
        x0.shape[0], x0.shape[1], granularity, block_size, shift, generator=rnd.cpu, device=x0.device
    )
    eps = rnd.normal(x0.shape, x0.device)
    v = velocity_field(runner, text, mode, block_size, clean)(interpolate(x0, eps, sigma), sigma)
    return flow_matching_loss(v, x0, eps, loss_weight(sigma, weighting))


def plan(config: RunConfig, ctx: DistContext) -> StagePlan:
    cfg, b = config.ar_diffusion, config.model.block_size
    model = build_model(config, stage_inputs(config, STAGE).init, "AR teacher")
    data = open_set(config.data.latents, SetKind.LATENTS, "ar-diffusion")
    data.check_latent_shape(latent_shape(config, model))
    check_text(data, model)
    runner = trainable(model, config, ctx)
    trainee = Trainee("teacher", runner, make_optimizer(runner, cfg.optim), cfg.optim.max_grad_norm)
    feed = stage_batches(data, config, ctx, cfg.loop.batch_size, cfg.loop.grad_accum, STAGE.value)
    mode = AttentionMode.TEACHER_FORCING if cfg.forcing is Forcing.TEACHER else AttentionMode.BLOCK_CAUSAL

    def loss(step: int, micro: int):
        batch = feed.fetch(step, micro)
        rnd = step_random(config, ctx, STAGE.value, step, micro, "loss")
        clean = batch["latents"] if cfg.forcing is Forcing.TEACHER else None
        shift = config.schedule.shift
        return denoising_loss(runner, batch, rnd, mode, cfg.granularity, cfg.weighting, b, shift, clean), {}

    def updates(step: int) -> list[Update]:
        return [Update("teacher", lambda micro: loss(step, micro))]

    def generate(text, negative, noise):
        return ar_teacher_sample(runner, config, text, negative, noise, config.ode_pairs.guidance_scale)

    sample = preview_sampler(config, ctx, data, latent_shape(config, model), generate)
    return StagePlan(STAGE.value, {"teacher": trainee}, updates, exports={"model": runner}, sample=sample)
