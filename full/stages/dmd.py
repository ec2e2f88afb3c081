r"""Stage ``dmd``: asymmetric distribution matching distillation with self-forcing rollout.

Three models: the few-step causal **generator** G (from the ODE / CD stage), the bidirectional **real score**
(the teacher: a separate, possibly larger model folder, ``dmd.real_score_path``; CFG w = 4, which is the
authors' ``guidance_scale: 3.0`` applied as :math:`x_0^c + 3(x_0^c - x_0^u)`) and the
bidirectional **critic** (fake score, initialised from the base model). Step t updates the critic; every
``critic_updates_per_generator``-th step (t ≡ 0) first updates the generator (published ratio 5).

*Generator sample.* ``rollout=self`` (Self / Causal Forcing): G generates block by block on its own outputs
with its KV cache (:func:`cf_ref.rollout.few_step_rollout`); every block stops at a random exit step of the
few-step list (one draw shared by all blocks, identical on every process) and only that denoising call
carries gradient (stochastic gradient truncation); finished blocks are committed to the cache at
``context_noise``. ``rollout=data`` (CausVid, as ``model/causvid.py`` of the authors' code and the toy track):
each block of a data video is noised to a level of the few-step list drawn per block,
:math:`x = (1-\sigma_k)x_0 + \sigma_k\varepsilon`, and G predicts :math:`\hat x_0 = x - \sigma_k v_\theta` in one
teacher-forcing pass with the ground-truth clean frames of earlier blocks as context (no rollout from noise).

*Losses* (:mod:`cf_ref.distill.dmd`), with :math:`\sigma = \mathrm{clamp}(\mathrm{shift}(u), t_{min}/1000,
t_{max}/1000)`, ``u ~ U[0,1]`` one per video: generator
:math:`\tfrac12\lVert x - \mathrm{sg}(x - g)\rVert^2` with the normalised DMD gradient
:math:`g = (\hat x_0^{fake} - \hat x_0^{real}) / \mathrm{mean}|x - \hat x_0^{real}|`; critic: flow matching on
:math:`\mathrm{sg}(x)`. The generator's EMA (decay 0.99) is kept from ``ema_start`` on.

The rollout's gradient reaches every weight used in the exit calls, the text projection and cross-attention
K/V included (:func:`full.stages.common.kv_blockwise`); the published trainer caches the prompt's
cross-attention K/V at the rollout's first call, so there those weights get gradient only when the sampled
exit step is 0.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from cf_ref.distill.dmd import (
    critic_loss,
    data_context_samples,
    dmd_generator_loss,
    dmd_sigmas,
    self_rollout_samples,
)
from cf_ref.masks import AttentionMode
from cf_ref.rollout import sample_exit_steps
from cf_ref.schedule import Granularity, sample_indices
from full.config import GeneratorRollout, RunConfig, Stage
from full.data import DataError, SetKind, TensorSet
from full.distributed import DistContext
from full.recipes import stage_inputs
from full.stages import common
from full.train import StagePlan, Trainee, Update, make_optimizer

STAGE = Stage.DMD
BIDIRECTIONAL = AttentionMode.BIDIRECTIONAL


def score_sigmas(config: RunConfig, batch: int, frames: int, rnd: common.StepRandom, device) -> Tensor:
    """DMD / critic levels ``[B, F]`` (:func:`cf_ref.distill.dmd.dmd_sigmas`)."""
    cfg = config.dmd
    return dmd_sigmas(batch, frames, config.model.shift, cfg.t_min, cfg.t_max, generator=rnd.cpu, device=device)


def real_score_field(real, config: RunConfig, text: Tensor, negative: Tensor):
    """The real score: the bidirectional teacher with CFG :math:`v_u + w(v_c - v_u)`, ``w = dmd.guidance_scale``."""
    return common.guided_field(real, text, negative, config.dmd.guidance_scale, BIDIRECTIONAL, config.model.block_size)


def generator_samples(
    runner, config: RunConfig, batch: dict[str, Tensor], rnd: common.StepRandom, shape: tuple[int, ...]
) -> Tensor:
    """Generator samples ``[B, F, C, H, W]`` for ``batch['text']`` (and ``batch['latents']`` with rollout=data);
    gradient flows through each block's exit step (rollout=data: the one call) when grad is enabled. Draws, in
    order: the noise ``[B, *shape]`` (``rnd.device``), then the exit steps (``rnd.shared``) or, with rollout=data,
    the per-block indices into the few-step list (``rnd.cpu``)."""
    cfg, b = config.dmd, config.model.block_size
    text = batch["text"]
    noise = rnd.normal((text.shape[0], *shape), text.device)
    sigmas = common.student_sigmas(config).to(text.device)
    if cfg.rollout is GeneratorRollout.DATA:
        x0 = batch["latents"]
        index = sample_indices(x0.shape[0], x0.shape[1], len(sigmas), Granularity.BLOCK, b, generator=rnd.cpu)
        teacher_forced = common.velocity_field(runner, text, AttentionMode.TEACHER_FORCING, b, x0)
        return data_context_samples(teacher_forced, x0, noise, sigmas, index)
    exits = sample_exit_steps(shape[0] // b, len(sigmas), cfg.same_exit_across_blocks, generator=rnd.shared)

    def run(m) -> Tensor:
        bw = common.kv_blockwise(m, text, b)
        return self_rollout_samples(bw, noise, b, sigmas, bw.new_cache(), exits, cfg.context_noise, rnd.device)

    return runner(run)


def text_source(config: RunConfig) -> TensorSet:
    if config.dmd.rollout is GeneratorRollout.DATA:
        return common.open_set(config.data.latents, SetKind.LATENTS, "dmd with rollout=data")
    if config.data.prompts is not None:
        return TensorSet(config.data.prompts, SetKind.PROMPTS)
    if config.data.latents is not None:
        return TensorSet(config.data.latents, SetKind.LATENTS)
    raise DataError("dmd needs prompts: set data.prompts (a prepared prompt set) or data.latents")


def plan(config: RunConfig, ctx: DistContext) -> StagePlan:
    cfg, b = config.dmd, config.model.block_size
    inputs = stage_inputs(config, STAGE)
    gen_model = common.build_model(config, inputs.init, "DMD generator")
    critic_model = common.build_model(config, None, "DMD critic")
    real_dir = cfg.real_score_path or common.base_model_dir(config)
    real_model = common.load_model(real_dir, "DMD real score")
    for name, m in (("real score", real_model), ("critic", critic_model)):
        for key in ("in_channels", "text_dim"):
            if m.config[key] != gen_model.config[key]:
                raise DataError(f"the {name} has {key}={m.config[key]}, the generator {gen_model.config[key]}")
    data = text_source(config)
    common.check_text(data, gen_model)
    shape = common.latent_shape(config, gen_model)
    if cfg.rollout is GeneratorRollout.DATA:
        data.check_latent_shape(shape)

    ema = common.frozen(copy.deepcopy(gen_model), config, ctx, cast=False)
    generator = common.trainable(gen_model, config, ctx)
    critic = common.trainable(critic_model, config, ctx)
    real = common.frozen(real_model, config, ctx)
    trainees = {
        "generator": Trainee(
            "generator",
            generator,
            make_optimizer(generator, cfg.optim),
            cfg.optim.max_grad_norm,
            ema=ema,
            ema_decay=cfg.ema_decay,
            ema_start=cfg.ema_start,
        ),
        "critic": Trainee("critic", critic, make_optimizer(critic, cfg.critic_optim), cfg.critic_optim.max_grad_norm),
    }
    feed = common.batches(data, config, ctx, cfg.loop.batch_size, cfg.loop.grad_accum, STAGE.value)
    fields = ("text", "latents") if cfg.rollout is GeneratorRollout.DATA else ("text",)

    def generator_loss(step: int, micro: int):
        batch = feed.fetch(step, micro, fields)
        rnd = common.step_random(config, ctx, STAGE.value, step, micro, "generator")
        x = generator_samples(generator, config, batch, rnd, shape)
        sigma = score_sigmas(config, x.shape[0], x.shape[1], rnd, x.device)
        eps = rnd.normal(x.shape, x.device)
        text, negative = batch["text"], feed.negative(x.shape[0])
        real_field = real_score_field(real, config, text, negative)
        fake_field = common.velocity_field(critic, text, BIDIRECTIONAL, b)
        return dmd_generator_loss(x, real_field, fake_field, sigma, eps)

    def critic_update_loss(step: int, micro: int):
        batch = feed.fetch(step, micro, fields)
        rnd = common.step_random(config, ctx, STAGE.value, step, micro, "critic")
        with torch.no_grad():
            x = generator_samples(generator, config, batch, rnd, shape)
        sigma = score_sigmas(config, x.shape[0], x.shape[1], rnd, x.device)
        eps = rnd.normal(x.shape, x.device)
        return critic_loss(common.velocity_field(critic, batch["text"], BIDIRECTIONAL, b), x, sigma, eps), {}

    def updates(step: int) -> list[Update]:
        out = []
        if step % cfg.critic_updates_per_generator == 0:
            out.append(Update("generator", lambda micro: generator_loss(step, micro)))
        out.append(Update("critic", lambda micro: critic_update_loss(step, micro)))
        return out

    sample = common.sampler(
        config, ctx, data, shape, lambda text, negative, noise: common.few_step_sample(generator, config, text, noise)
    )
    exports = {"model": generator, "ema": ema, "critic": critic}
    return StagePlan(STAGE.value, trainees, updates, exports=exports, sample=sample)
