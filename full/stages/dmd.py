r"""Stage ``dmd``: asymmetric distribution matching distillation with self-forcing rollout.

Three models: the few-step causal **generator** G (from the ODE / CD stage, or the AR teacher for
``ar-diffusion-init``), the bidirectional **real score**
(the teacher: a separate, possibly larger model folder, ``dmd.real_score_path``; CFG w = 4, which is the
authors' ``guidance_scale: 3.0`` applied as :math:`x_0^c + 3(x_0^c - x_0^u)`) and the
bidirectional **critic** (fake score, initialised from the base model). Step t updates the critic; every
``critic_updates_per_generator``-th step (t ≡ 0) first updates the generator (published ratio 5).

*Generator sample* (``dmd.generator_input``, :class:`cf_ref.recipes.GeneratorInput`). ``self`` (Self / Causal
Forcing, :func:`cf_ref.distill.dmd.self_rollout_samples`): G generates block by block on its own outputs with its
KV cache (``dmd.cache``: the dynamic :class:`full.cache.WanKVCache` or the preallocated
:class:`full.static_cache.StaticKVCache`, same samples and gradients); every block stops at a random exit step of the
few-step list (one draw shared by all blocks, identical on every process) and only that denoising call
carries gradient (stochastic gradient truncation); finished blocks are committed to the cache at
``context_noise``. ``data`` (CausVid, as ``model/causvid.py`` of the authors' code and the toy track;
:func:`cf_ref.distill.dmd.data_context_samples`):
each block of a data video is noised to a level of the few-step list drawn per block,
:math:`x = (1-\sigma_k)x_0 + \sigma_k\varepsilon`, and G predicts :math:`\hat x_0 = x - \sigma_k v_\theta` in one
teacher-forcing pass with the ground-truth clean frames of earlier blocks as context (no rollout from noise).

*Losses* (:mod:`cf_ref.distill.dmd`), with :math:`\sigma = \mathrm{clamp}(\mathrm{shift}(u), t_{min}/1000,
t_{max}/1000)`, ``u ~ U[0,1]`` one per video: generator
:math:`\tfrac12\lVert x - \mathrm{sg}(x - g)\rVert^2` with the normalised DMD gradient
:math:`g = (\hat x_0^{fake} - \hat x_0^{real}) / \mathrm{mean}|x - \hat x_0^{real}|`; critic: flow matching on
:math:`\mathrm{sg}(x)`. The generator's EMA (decay 0.99) is kept from ``ema_start`` on.

The rollout's gradient reaches every weight used in the exit calls, the text projection and cross-attention
K/V included (:func:`full.stages.fields.kv_blockwise`), as in the published trainer: with its
``gradient_checkpointing: true`` a grad-enabled call skips the cross-attention cache and projects the prompt's K/V
itself (``CausalWanModel._forward_inference``).

Two training options (docs/full.md, "Training options"): ``dmd.first_block_steps`` (Causal Forcing++'s 1-/2-step
students: the rollout's first block on the 4-step list, its exit drawn on its own, as the authors' trainer and
every cf-ref sampler do) and ``dmd.image_to_video`` (frame 0 of every rollout is the latent set's first frame,
clean at σ = 0, as in image-to-video sampling).

Two options reproduce the authors' trainer where it departs from the method (docs/full.md, "Where we differ"):
``dmd.cache_gradient=published-leak`` (the gradient their in-place KV cache leaks from later blocks into earlier
blocks' exit calls, :mod:`full.cache_gradient`) and ``dmd.score_shift=8`` (their real and fake scores read x̂0 on
a shift-8 grid, :func:`cf_ref.distill.dmd.score_on_grid`).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from cf_ref.distill.dmd import (
    critic_loss,
    data_context_samples,
    dmd_generator_loss,
    dmd_sigmas,
    score_on_grid,
    self_rollout_samples,
)
from cf_ref.first_frame import FirstFrameConditioned
from cf_ref.granularity import Granularity, sample_indices
from cf_ref.masks import AttentionMode
from cf_ref.recipes import GeneratorInput
from cf_ref.rollout import sample_exit_steps
from cf_ref.schedule import FewStepSchedule
from cf_ref.solvers import VelocityField
from cf_ref.time_grid import train_grid
from full.config import RunConfig
from full.data import DataError, SetKind, TensorSet
from full.distributed import DistContext
from full.model import CausalWanTransformer3DModel
from full.recipes import Stage
from full.stage_inputs import stage_inputs
from full.stages.batches import Batches, check_text, latent_shape, open_set, stage_batches
from full.stages.fields import guided_field, kv_blockwise, velocity_field
from full.stages.models import base_model_dir, build_model, frozen, load_model, trainable
from full.stages.previews import few_step_sample, preview_sampler
from full.stages.randomness import StepRandom, step_random
from full.train import StagePlan, Trainee, Update, make_optimizer

STAGE = Stage.DMD
BIDIRECTIONAL = AttentionMode.BIDIRECTIONAL


def score_sigmas(config: RunConfig, batch: int, frames: int, rnd: StepRandom, device) -> Tensor:
    """DMD / critic levels ``[B, F]`` (:func:`cf_ref.distill.dmd.dmd_sigmas`)."""
    cfg = config.dmd
    return dmd_sigmas(batch, frames, config.schedule.shift, cfg.t_min, cfg.t_max, generator=rnd.cpu, device=device)


def score_field(field: VelocityField, config: RunConfig) -> VelocityField:
    """A score as the DMD losses read it: as is, or with x̂0 on the 1000-step grid of ``dmd.score_shift``
    (:func:`cf_ref.distill.dmd.score_on_grid`, the authors' score wrappers)."""
    shift = config.dmd.score_shift
    return field if shift is None else score_on_grid(field, train_grid(shift))


def real_score_field(real, config: RunConfig, text: Tensor, negative: Tensor) -> VelocityField:
    """The real score: the bidirectional teacher with CFG :math:`v_u + w(v_c - v_u)`, ``w = dmd.guidance_scale``."""
    field = guided_field(real, text, negative, config.dmd.guidance_scale, BIDIRECTIONAL, config.model.block_size)
    return score_field(field, config)


def fake_score_field(critic, config: RunConfig, text: Tensor) -> VelocityField:
    """The fake score: the critic, read like the real score (``dmd.score_shift``)."""
    return score_field(velocity_field(critic, text, BIDIRECTIONAL, config.model.block_size), config)


def rollout_exits(config: RunConfig, num_blocks: int, rnd: StepRandom) -> tuple[list[int], Tensor | None]:
    """Exit steps of the self-forcing rollout (``rnd.shared``) and block 0's σ list: with ``dmd.first_block_steps``
    block 0 runs the uniform K₀-step list and draws its exit on ``[0, K₀)`` first, the other blocks on the
    student's list as usual (the authors' ``exit_flag_first`` / ``exit_flags_other``); else None."""
    cfg, k = config.dmd, config.schedule.num_steps
    if cfg.first_block_steps is None:
        return sample_exit_steps(num_blocks, k, cfg.same_exit_across_blocks, generator=rnd.shared), None
    first = FewStepSchedule.uniform(cfg.first_block_steps, config.schedule.shift).student_sigmas(torch.float32)
    exits = sample_exit_steps(1, len(first), generator=rnd.shared)
    if num_blocks > 1:
        exits += sample_exit_steps(num_blocks - 1, k, cfg.same_exit_across_blocks, generator=rnd.shared)
    return exits, first


def generator_samples(
    runner, config: RunConfig, batch: dict[str, Tensor], rnd: StepRandom, shape: tuple[int, ...]
) -> Tensor:
    """Generator samples ``[B, F, C, H, W]`` for ``batch['text']`` (and ``batch['latents']`` with generator_input
    data or image-to-video); gradient flows through each block's exit step (data: the one call) when grad is
    enabled. Draws, in order: the noise ``[B, *shape]`` (``rnd.device``), then the exit steps (``rnd.shared``,
    :func:`rollout_exits`) or, with data context, the per-block indices into the few-step list (``rnd.cpu``).
    With ``dmd.image_to_video`` frame 0 is ``batch['latents'][:, :1]``, clean at σ = 0 in every call of block 0
    (:class:`cf_ref.first_frame.FirstFrameConditioned`), and exactly that image in the samples."""
    cfg, b = config.dmd, config.model.block_size
    text = batch["text"]
    noise = rnd.normal((text.shape[0], *shape), text.device)
    sigmas = config.schedule.student_sigmas(torch.float32).to(text.device)
    if cfg.generator_input is GeneratorInput.DATA_CONTEXT:
        x0 = batch["latents"]
        index = sample_indices(x0.shape[0], x0.shape[1], len(sigmas), Granularity.BLOCK, b, generator=rnd.cpu)
        teacher_forced = velocity_field(runner, text, AttentionMode.TEACHER_FORCING, b, x0)
        return data_context_samples(teacher_forced, x0, noise, sigmas, index)
    exits, first = rollout_exits(config, shape[0] // b, rnd)
    first = None if first is None else first.to(text.device)
    image = batch["latents"][:, :1] if cfg.image_to_video else None

    def run(m) -> Tensor:
        bw = kv_blockwise(m, text, b, cfg.cache_gradient)
        model = bw if image is None else FirstFrameConditioned(bw, image)
        cache = bw.new_cache(cfg.cache, max_frames=shape[0])
        return self_rollout_samples(model, noise, b, sigmas, cache, exits, cfg.context_noise, rnd.device, first)

    x = runner(run)
    return x if image is None else torch.cat([image.to(x), x[:, 1:]], dim=1)


def text_source(config: RunConfig) -> TensorSet:
    """The prompts of the generator's samples: the latent set with data context or image-to-video (the first
    frames), else the prompt set."""
    if config.dmd.generator_input is GeneratorInput.DATA_CONTEXT:
        return open_set(config.data.latents, SetKind.LATENTS, "dmd with generator_input=data")
    if config.dmd.image_to_video:
        return open_set(config.data.latents, SetKind.LATENTS, "dmd with image_to_video (first frames)")
    if config.data.prompts is not None:
        return TensorSet(config.data.prompts, SetKind.PROMPTS)
    if config.data.latents is not None:
        return TensorSet(config.data.latents, SetKind.LATENTS)
    raise DataError("dmd needs prompts: set data.prompts (a prepared prompt set) or data.latents")


def _load_models(config: RunConfig) -> tuple[CausalWanTransformer3DModel, ...]:
    """(generator, critic, real score), unwrapped; the critic starts from the base model."""
    gen_model = build_model(config, stage_inputs(config, STAGE).init, "DMD generator")
    critic_model = build_model(config, None, "DMD critic")
    real_model = load_model(config.dmd.real_score_path or base_model_dir(config), "DMD real score")
    for name, m in (("real score", real_model), ("critic", critic_model)):
        for key in ("in_channels", "text_dim"):
            if m.config[key] != gen_model.config[key]:
                raise DataError(f"the {name} has {key}={m.config[key]}, the generator {gen_model.config[key]}")
    return gen_model, critic_model, real_model


def _losses(config: RunConfig, ctx: DistContext, feed: Batches, models: dict[str, nn.Module], shape):
    """The loss closures ``generator_loss(step, micro)`` and ``critic_update_loss(step, micro)`` (see module doc)."""
    generator, critic, real = models["generator"], models["critic"], models["real"]
    data_context = config.dmd.generator_input is GeneratorInput.DATA_CONTEXT
    fields = ("text", "latents") if data_context or config.dmd.image_to_video else ("text",)

    def generator_loss(step: int, micro: int):
        batch = feed.fetch(step, micro, fields)
        rnd = step_random(config, ctx, STAGE.value, step, micro, "generator")
        x = generator_samples(generator, config, batch, rnd, shape)
        sigma = score_sigmas(config, x.shape[0], x.shape[1], rnd, x.device)
        eps = rnd.normal(x.shape, x.device)
        text, negative = batch["text"], feed.negative(x.shape[0])
        real_field = real_score_field(real, config, text, negative)
        return dmd_generator_loss(x, real_field, fake_score_field(critic, config, text), sigma, eps)

    def critic_update_loss(step: int, micro: int):
        batch = feed.fetch(step, micro, fields)
        rnd = step_random(config, ctx, STAGE.value, step, micro, "critic")
        with torch.no_grad():
            x = generator_samples(generator, config, batch, rnd, shape)
        sigma = score_sigmas(config, x.shape[0], x.shape[1], rnd, x.device)
        eps = rnd.normal(x.shape, x.device)
        return critic_loss(fake_score_field(critic, config, batch["text"]), x, sigma, eps), {}

    return generator_loss, critic_update_loss


def plan(config: RunConfig, ctx: DistContext) -> StagePlan:
    cfg = config.dmd
    gen_model, critic_model, real_model = _load_models(config)
    data = text_source(config)
    check_text(data, gen_model)
    shape = latent_shape(config, gen_model)
    if cfg.generator_input is GeneratorInput.DATA_CONTEXT or cfg.image_to_video:
        data.check_latent_shape(shape)
    ema = frozen(copy.deepcopy(gen_model), config, ctx, cast=False)
    generator = trainable(gen_model, config, ctx)
    critic = trainable(critic_model, config, ctx)
    real = frozen(real_model, config, ctx)
    gen_optim = make_optimizer(generator, cfg.optim)
    trainees = {
        "generator": Trainee(
            "generator", generator, gen_optim, cfg.optim.max_grad_norm, ema, cfg.ema_decay, cfg.ema_start
        ),
        "critic": Trainee("critic", critic, make_optimizer(critic, cfg.critic_optim), cfg.critic_optim.max_grad_norm),
    }
    feed = stage_batches(data, config, ctx, cfg.loop.batch_size, cfg.loop.grad_accum, STAGE.value)
    models = {"generator": generator, "critic": critic, "real": real}
    generator_loss, critic_update_loss = _losses(config, ctx, feed, models, shape)

    def updates(step: int) -> list[Update]:
        out = []
        if step % cfg.critic_updates_per_generator == 0:
            out.append(Update("generator", lambda micro: generator_loss(step, micro)))
        out.append(Update("critic", lambda micro: critic_update_loss(step, micro)))
        return out

    def generate(text, negative, noise):
        return few_step_sample(generator, config, text, noise, cfg.first_block_steps)

    sample = preview_sampler(config, ctx, data, shape, generate)
    exports = {"model": generator, "ema": ema, "critic": critic}
    return StagePlan(STAGE.value, trainees, updates, exports=exports, sample=sample)
