"""One step of each stage, built from a training configuration on fake models, through the stages' own code.

Each builder makes the stage's models at their real architecture (:mod:`full.plan.architectures`) as fake tensors
(real ones with ``fake=False``: the tests measure what the plan predicts),
wraps them with the stages' own wrappers (:func:`full.stages.models.trainable` / ``frozen``: gradient checkpointing,
FSDP2 over the simulated ranks, bf16 storage of frozen models), and returns the step's updates, each calling the
stage's own loss code (:func:`full.stages.ar_diffusion.denoising_loss`, :func:`cf_ref.distill.ode.ode_regression_loss`,
:func:`full.stages.cd.cd_loss`, the DMD stage's generator and critic losses, :func:`full.stages.ode_pairs.teacher_map`)
followed by what :func:`full.train.run_stage` does after a loss: backward, gradient clipping, the AdamW step and
the EMA update. Batches are zeros of the configured shapes (``B`` = the loop's batch size per process).

Stage steps: ``ar-diffusion``, ``ode-pairs`` (one pair: ``schedule.ode_steps`` Euler steps of the teacher's guided
PF-ODE, no grad; one is simulated), ``ode``, ``cd``, ``dmd-generator``, ``dmd-critic``, and ``sampling`` (a few-step KV-cached rollout of the
whole video in bf16, :func:`cf_ref.rollout.few_step_rollout`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode

from cf_ref.distill.ode import ode_regression_loss
from cf_ref.ema import ema_update
from cf_ref.granularity import sample_indices
from cf_ref.masks import AttentionMode
from cf_ref.recipes import Forcing, GeneratorInput, PairTeacher
from cf_ref.rollout import few_step_rollout
from cf_ref.solvers import Method, step
from full.config import OptimizerConfig, Parallelism, Precision, RunConfig
from full.distributed import DistContext, autocast, place_frozen, reshard_all, unwrap
from full.dtypes import cast_keeping_fp32
from full.model import CausalWanTransformer3DModel
from full.plan.memory import fake_tensors
from full.stages import ar_diffusion, cd, dmd
from full.stages.fields import guided_field, velocity_field
from full.stages.models import frozen, trainable
from full.stages.randomness import step_random
from full.train import make_optimizer

STAGE_STEPS = ("ar-diffusion", "ode-pairs", "ode", "cd", "dmd-generator", "dmd-critic", "sampling")


@dataclass(frozen=True)
class Architectures:
    """``CausalWanTransformer3DModel`` kwargs of the base model (generator, critic, teachers) and the DMD real score;
    ``text_tokens``: prompt length of the text encoder (UMT5: 512)."""

    base: dict[str, Any]
    real_score: dict[str, Any]
    text_tokens: int = 512


@dataclass
class StageStep:
    """A stage's simulated models and its step(s): ``updates`` name → one update (or no-grad pass)."""

    updates: dict[str, Callable[[], None]]
    models: list[CausalWanTransformer3DModel]
    tracked: list[Any]
    ema: list[nn.Module] = field(default_factory=list)
    frozen: list[nn.Module] = field(default_factory=list)
    optimizers: list[torch.optim.Optimizer] = field(default_factory=list)
    repeats: dict[str, int] = field(default_factory=dict)  # a step that stands for this many (FLOPs scale)


class ZeroFeed:
    """A stage's batches (:class:`full.stages.batches.Batches` interface) as zeros of the configured shapes."""

    def __init__(self, fields: dict[str, tuple[int, ...]], text: tuple[int, ...]):
        self.fields = {k: torch.zeros(s) for k, s in fields.items()}
        self._negative = torch.zeros(text)

    def fetch(self, step: int, micro: int, fields: tuple[str, ...] | None = None) -> dict[str, Tensor]:
        return {k: v for k, v in self.fields.items() if fields is None or k in fields}

    def negative(self, batch_size: int) -> Tensor:
        return self._negative.expand(batch_size, -1, -1)

    def tensors(self) -> list[Tensor]:
        return [*self.fields.values(), self._negative]


def _model(kwargs: dict[str, Any], mode: FakeTensorMode | None) -> CausalWanTransformer3DModel:
    """The model with fake weights (``mode``; real ones without). A fake model attends without masks: on a GPU the
    masked modes run FlexAttention, which, like unmasked flash attention, materialises no ``[L, L]`` tensor,
    while the CPU's SDPA would expand a dense mask; FLOPs are counted dense either way."""
    if mode is None:
        return CausalWanTransformer3DModel(**kwargs)
    with mode:
        model = CausalWanTransformer3DModel(**kwargs)
    model._mask = lambda *args: None
    return model


def _shapes(config: RunConfig, arch: Architectures, batch: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    v = config.video
    latent = (batch, v.latent_frames, arch.base["in_channels"], v.latent_height, v.latent_width)
    return latent, (batch, arch.text_tokens, arch.base["text_dim"])


def _update(
    module: nn.Module,
    optim: torch.optim.Optimizer,
    cfg: OptimizerConfig,
    loss_fn: Callable[[], Tensor],
    config: RunConfig,
    ctx: DistContext,
    ema: nn.Module | None = None,
    decay: float = 0.99,
) -> Callable[[], None]:
    """One update as :func:`full.train.run_stage` applies it (without its finiteness checks: values are fake)."""

    def run() -> None:
        module.train()
        optim.zero_grad(set_to_none=True)
        with autocast(ctx, config.parallel.precision):
            loss = loss_fn()
        loss.backward()
        params = [p for p in module.parameters() if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optim.step()
        optim.zero_grad(set_to_none=True)
        if ema is not None:
            reshard_all(ema)
            reshard_all(module)
            ema_update(ema, unwrap(module), decay)

    return run


def ar_diffusion_step(config: RunConfig, ctx: DistContext, arch: Architectures, fake: bool = True) -> StageStep:
    mode = fake_tensors() if fake else None
    cfg, b = config.ar_diffusion, config.model.block_size
    model = _model(arch.base, mode)
    runner = trainable(model, config, ctx)
    optim = make_optimizer(runner, cfg.optim)
    latent, text = _shapes(config, arch, cfg.loop.batch_size)
    feed = ZeroFeed({"latents": latent, "text": text}, text[1:])
    teacher = cfg.forcing is Forcing.TEACHER
    mode = AttentionMode.TEACHER_FORCING if teacher else AttentionMode.BLOCK_CAUSAL

    def loss() -> Tensor:
        batch = feed.fetch(0, 0)
        rnd = step_random(config, ctx, "ar-diffusion", 0, 0, "loss")
        clean = batch["latents"] if teacher else None
        args = (mode, cfg.granularity, cfg.weighting, b, config.schedule.shift, clean)
        return ar_diffusion.denoising_loss(runner, batch, rnd, *args)

    run = _update(runner, optim, cfg.optim, loss, config, ctx)
    return StageStep({"ar-diffusion": run}, [model], [runner, optim, *feed.tensors()], optimizers=[optim])


def ode_pairs_step(config: RunConfig, ctx: DistContext, arch: Architectures, fake: bool = True) -> StageStep:
    """One Euler step of the teacher's guided PF-ODE (the field :func:`full.stages.ode_pairs.teacher_map`
    integrates); a pair is ``schedule.ode_steps`` of them (``repeats``): the same peak, that many FLOPs."""
    mode = fake_tensors() if fake else None
    cfg, b = config.ode_pairs, config.model.block_size
    model = _model(arch.base, mode)
    if cfg.precision is Precision.BF16:
        cast_keeping_fp32(model, torch.bfloat16)
    runner = place_frozen(model, ctx, Parallelism.DDP, cfg.precision)  # replicated, as the stage does
    latent, text = _shapes(config, arch, cfg.batch_size)
    feed = ZeroFeed({"latents": latent, "text": text, "eps": latent}, text[1:])
    mode = AttentionMode.TEACHER_FORCING if cfg.teacher is PairTeacher.AR else AttentionMode.BIDIRECTIONAL
    grid = config.schedule.grid()

    def run() -> None:
        batch = feed.fetch(0, 0)
        clean = batch["latents"] if cfg.teacher is PairTeacher.AR else None
        field = guided_field(runner, batch["text"], feed.negative(latent[0]), cfg.guidance_scale, mode, b, clean)
        with torch.no_grad():
            step(field, batch["eps"], grid[0].float(), grid[1].float(), Method.EULER)

    steps = {"ode-pairs": run}
    return StageStep(steps, [model], [runner, *feed.tensors()], frozen=[runner], repeats={"ode-pairs": len(grid) - 1})


def ode_step(config: RunConfig, ctx: DistContext, arch: Architectures, fake: bool = True) -> StageStep:
    mode = fake_tensors() if fake else None
    cfg, b = config.ode, config.model.block_size
    model = _model(arch.base, mode)
    runner = trainable(model, config, ctx)
    optim = make_optimizer(runner, cfg.optim)
    latent, text = _shapes(config, arch, cfg.loop.batch_size)
    sigmas = config.schedule.student_sigmas(torch.float32)
    states = (latent[0], len(sigmas), *latent[1:])
    ar_pairs = config.ode_pairs.teacher is PairTeacher.AR
    fields = {"states": states, "target": latent, "text": text, **({"clean": latent} if ar_pairs else {})}
    feed = ZeroFeed(fields, text[1:])
    mode = AttentionMode.TEACHER_FORCING if ar_pairs else AttentionMode.BLOCK_CAUSAL

    def loss() -> Tensor:
        batch = feed.fetch(0, 0)
        rnd = step_random(config, ctx, "ode", 0, 0, "loss")
        index = sample_indices(latent[0], latent[1], len(sigmas), cfg.index_granularity, b, generator=rnd.cpu)
        student = velocity_field(runner, batch["text"], mode, b, batch.get("clean"))
        return ode_regression_loss(student, batch["states"], sigmas, batch["target"], index)

    run = _update(runner, optim, cfg.optim, loss, config, ctx)
    return StageStep({"ode": run}, [model], [runner, optim, *feed.tensors()], optimizers=[optim])


def cd_step(config: RunConfig, ctx: DistContext, arch: Architectures, fake: bool = True) -> StageStep:
    mode = fake_tensors() if fake else None
    cfg = config.cd
    models = [_model(arch.base, mode) for _ in range(3)]
    teacher = frozen(models[1], config, ctx)
    target = frozen(models[2], config, ctx, cast=False)
    student = trainable(models[0], config, ctx)
    optim = make_optimizer(student, cfg.optim)
    latent, text = _shapes(config, arch, cfg.loop.batch_size)
    feed = ZeroFeed({"latents": latent, "text": text}, text[1:])

    def loss() -> Tensor:
        return cd.cd_loss(config, ctx, feed, (student, target, teacher), 0, 0)

    run = _update(student, optim, cfg.optim, loss, config, ctx, ema=target, decay=cfg.ema_decay)
    tracked = [student, teacher, target, optim, *feed.tensors()]
    return StageStep({"cd": run}, models, tracked, ema=[target], frozen=[teacher], optimizers=[optim])


def dmd_steps(config: RunConfig, ctx: DistContext, arch: Architectures, fake: bool = True) -> StageStep:
    mode = fake_tensors() if fake else None
    cfg = config.dmd
    gen_model, critic_model, ema_model = (_model(arch.base, mode) for _ in range(3))
    real_model = _model(arch.real_score, mode)
    ema = frozen(ema_model, config, ctx, cast=False)
    generator, critic = trainable(gen_model, config, ctx), trainable(critic_model, config, ctx)
    real = frozen(real_model, config, ctx)
    gen_optim, critic_optim = make_optimizer(generator, cfg.optim), make_optimizer(critic, cfg.critic_optim)
    latent, text = _shapes(config, arch, cfg.loop.batch_size)
    data = cfg.generator_input is GeneratorInput.DATA_CONTEXT
    feed = ZeroFeed({"text": text, **({"latents": latent} if data else {})}, text[1:])
    models = {"generator": generator, "critic": critic, "real": real}
    generator_loss, critic_loss = dmd._losses(config, ctx, feed, models, latent[1:])
    gen_loss = lambda: generator_loss(0, 0)[0]  # noqa: E731
    gen_run = _update(generator, gen_optim, cfg.optim, gen_loss, config, ctx, ema, cfg.ema_decay)
    critic_run = _update(critic, critic_optim, cfg.critic_optim, lambda: critic_loss(0, 0)[0], config, ctx)
    return StageStep(
        {"dmd-generator": gen_run, "dmd-critic": critic_run},
        [gen_model, critic_model, ema_model, real_model],
        [generator, critic, real, ema, gen_optim, critic_optim, *feed.tensors()],
        ema=[ema],
        frozen=[real],
        optimizers=[gen_optim, critic_optim],
    )


def sampling_step(config: RunConfig, ctx: DistContext, arch: Architectures, fake: bool = True) -> StageStep:
    """The few-step sampler over the whole video: bf16 weights, no grad, prompt K/V precomputed, full KV cache."""
    mode = fake_tensors() if fake else None
    model = _model(arch.base, mode)
    cast_keeping_fp32(model, torch.bfloat16)
    model.requires_grad_(False).eval()
    latent, text = _shapes(config, arch, 1)
    noise, prompt = torch.zeros(latent), torch.zeros(text)
    sigmas = config.schedule.student_sigmas(torch.float32)

    def run() -> None:
        with torch.no_grad():
            bw = model.blockwise(prompt, config.model.block_size)
            few_step_rollout(bw, noise, config.model.block_size, sigmas, bw.new_cache())

    return StageStep({"sampling": run}, [model], [model, noise, prompt], frozen=[model])


BUILDERS: dict[str, Callable[..., StageStep]] = {
    "ar-diffusion": ar_diffusion_step,
    "ode-pairs": ode_pairs_step,
    "ode": ode_step,
    "cd": cd_step,
    "dmd": dmd_steps,
    "sampling": sampling_step,
}
