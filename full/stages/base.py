"""The tiny preset's assets: the synthetic latent set and a base model trained on it.

The recipes start from a *pretrained* bidirectional video model (Wan2.1-T2V-1.3B). Offline, the tiny preset
has none, so it makes one: :func:`full.tiny.tiny_transformer` trained for ``model.tiny_base.steps`` steps
with the flow-matching loss of :mod:`full.stages.ar_diffusion` in bidirectional mode (one σ per video,
uniform weight; the caption replaced by the negative prompt's embedding with probability
``caption_dropout``, so that classifier-free guidance has an unconditional model to extrapolate from,
as in text-to-video pretraining), then written as a diffusers folder ``<out>/base-model`` that every stage
loads like a real checkpoint. Not part of the published pipeline.

Two small-budget aids (both off by default): the learning rate of :func:`learning_rate` (linear warm-up, then
constant or cosine decay) and, with ``ema_decay > 0``, an exponential moving average of the weights
(:mod:`cf_ref.ema`, first update a copy) that is saved as the base model instead of the last weights.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import torch
from torch import Tensor

from cf_ref.granularity import Granularity
from cf_ref.io import follow_umask
from cf_ref.losses import LossWeighting, flow_matching_loss
from cf_ref.masks import AttentionMode
from cf_ref.schedule import interpolate, shift_sigma
from full.checkpoint import load_weights
from full.config import LoopConfig, OptimizerConfig, RunConfig
from full.config.schema import SIGMA_SAMPLERS
from full.data import SetKind, TensorSet
from full.distributed import DistContext, barrier, broadcast_object
from full.stages.ar_diffusion import denoising_loss
from full.stages.batches import stage_batches
from full.stages.fields import velocity_field
from full.stages.models import base_model_dir, frozen, trainable
from full.stages.randomness import step_random
from full.synthetic import SyntheticSpec, write_synthetic_latents
from full.tiny import TINY_PRESETS, TinyConfig, tiny_transformer
from full.train import StagePlan, Trainee, Update, make_optimizer, run_stage

NAME = "base-pretrain"


def _write_synthetic_set(config: RunConfig, folder: Path) -> None:
    v, tiny = config.video, TINY_PRESETS[config.model.preset.value]
    spec = SyntheticSpec(
        count=config.model.tiny_base.videos,
        frames=v.latent_frames,
        channels=tiny.latent_channels,
        height=v.latent_height,
        width=v.latent_width,
        text_length=tiny.text_length,
        text_dim=tiny.text_dim,
        seed=config.seed,
    )
    write_synthetic_latents(folder, spec)


def asset_paths(config: RunConfig) -> RunConfig:
    """The configuration a run uses: with the tiny preset and no ``data.latents``, the set it generates,
    ``<out>/data/latents``; otherwise unchanged. Writes nothing."""
    if config.model.preset is None or config.data.latents is not None:
        return config
    generated = str(Path(config.out) / "data" / "latents")
    return dataclasses.replace(config, data=dataclasses.replace(config.data, latents=generated))


def prepare_assets(config: RunConfig, ctx: DistContext) -> RunConfig:
    """With the tiny preset: write the synthetic latent set (unless ``data.latents`` is given) and the tiny base
    model trained on it under ``<out>``, once; point the configuration at the set. Returns the configuration to
    run (unchanged without the preset)."""
    if config.model.preset is None:
        return config
    base = base_model_dir(config)
    config = asset_paths(config)
    data = Path(config.data.latents)
    generated = data == Path(config.out) / "data" / "latents"
    if ctx.is_main and generated and not (data / "index.json").is_file():
        _write_synthetic_set(config, data)
    barrier(ctx)
    # Every process must take the same branch (it runs collectives): rank 0 looks, the others follow.
    if broadcast_object(ctx, not (base / "config.json").is_file()):
        pretrain_tiny_base(config, ctx, TensorSet(data, SetKind.LATENTS), base)
    return config


def learning_rate(step: int, steps: int, lr: float, warmup: int = 0, cosine: bool = False) -> float:
    r"""The learning rate of (0-based) ``step`` of ``steps``: with :math:`W` = ``warmup``,

    .. math::  \eta(s) = \eta\,\frac{s+1}{W} \quad (s < W), \qquad
               \eta(s) = \eta \cdot \tfrac12\bigl(1 + \cos\bigl(\pi\,\tfrac{s - W}{\max(1, S - W)}\bigr)\bigr)
               \quad (s \ge W,\ \text{cosine}),

    and :math:`\eta` after the warm-up without ``cosine``."""
    if steps < 1 or warmup < 0 or not 0 <= step < steps or lr <= 0:
        raise ValueError(f"need 0 <= step < steps, warmup >= 0, lr > 0; got {step}, {steps}, {warmup}, {lr}")
    if step < warmup:
        return lr * (step + 1) / warmup
    if not cosine:
        return lr
    return lr * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def sample_base_sigmas(n: int, sampler: str, shift: float, generator: torch.Generator | None = None) -> Tensor:
    r"""``n`` training noise levels ``[n]`` (float64) of the base pretraining, one per video: with
    :math:`u \sim U[0, 1)`, :math:`z \sim N(0, 1)` and Wan's shift :math:`S_s(\sigma) = s\sigma / (1 + (s-1)\sigma)`,

    * ``uniform``: :math:`\sigma = S_s(u)` (density :math:`p(\sigma) = s / (s - (s-1)\sigma)^2`);
    * ``logit-normal``: :math:`\sigma = S_s(\operatorname{sigmoid}(z))` (SD3's, shifted);
    * ``mix``: half the draws :math:`u`, half :math:`S_s(u)` — density :math:`\tfrac12 + \tfrac12 p_s(\sigma)`:
      the shifted draws weight high noise (where a video's layout and motion are decided), the uniform ones keep
      the low-noise draws that learn sharp edges."""
    if sampler not in SIGMA_SAMPLERS or shift <= 0 or n < 1:
        raise ValueError(f"need a sampler in {SIGMA_SAMPLERS}, shift > 0, n >= 1; got {sampler!r}, {shift}, {n}")
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    if sampler == "uniform":
        return shift_sigma(u, shift)
    if sampler == "logit-normal":
        return shift_sigma(torch.sigmoid(torch.randn(n, generator=generator, dtype=torch.float64)), shift)
    pick = torch.rand(n, generator=generator, dtype=torch.float64) < 0.5
    return torch.where(pick, shift_sigma(u, shift), u)


def _base_loss(runner, batch: dict[str, Tensor], rnd, config: RunConfig) -> Tensor:
    """The flow-matching loss of the base model (bidirectional, one σ per video): the stages' own σ draw
    (:func:`full.stages.ar_diffusion.denoising_loss`, ``schedule.shift``) unless ``tiny_base`` names another
    sampler or shift (:func:`sample_base_sigmas`)."""
    tb, mode = config.model.tiny_base, AttentionMode.BIDIRECTIONAL
    if tb.sigma_sampler == "uniform" and tb.sigma_shift is None:
        args = (mode, Granularity.SAMPLE, LossWeighting.UNIFORM, 1, config.schedule.shift, None)
        return denoising_loss(runner, batch, rnd, *args)
    x0 = batch["latents"]
    shift = config.schedule.shift if tb.sigma_shift is None else tb.sigma_shift
    sigma = sample_base_sigmas(x0.shape[0], tb.sigma_sampler, shift, rnd.cpu)
    sigma = sigma[:, None].expand(-1, x0.shape[1]).to(device=x0.device, dtype=torch.float32)
    eps = rnd.normal(x0.shape, x0.device)
    v = velocity_field(runner, batch["text"], mode, 1)(interpolate(x0, eps, sigma), sigma)
    return flow_matching_loss(v, x0, eps)


def _pretrain_plan(config: RunConfig, ctx: DistContext, data: TensorSet, model, loop: LoopConfig) -> StagePlan:
    tb = config.model.tiny_base
    no_checkpointing = dataclasses.replace(config.parallel, gradient_checkpointing=False)
    runner = trainable(model, dataclasses.replace(config, parallel=no_checkpointing), ctx)
    optim = OptimizerConfig(lr=tb.lr, betas=(0.9, 0.999), weight_decay=0.0, max_grad_norm=1.0)
    ema = frozen(copy.deepcopy(model), config, ctx, cast=False) if tb.ema_decay > 0 else None
    trainee = Trainee("base", runner, make_optimizer(runner, optim), optim.max_grad_norm, ema, tb.ema_decay)
    feed = stage_batches(data, config, ctx, loop.batch_size, loop.grad_accum, NAME)

    def loss(step: int, micro: int):
        batch = feed.fetch(step, micro)
        rnd = step_random(config, ctx, NAME, step, micro, "loss")
        drop = torch.rand(batch["text"].shape[0], generator=rnd.cpu) < tb.caption_dropout  # learn p(x) too
        batch["text"] = torch.where(
            drop[:, None, None].to(batch["text"].device), feed.negative(len(drop)), batch["text"]
        )
        return _base_loss(runner, batch, rnd, config), {"lr": trainee.optimizer.param_groups[0]["lr"]}

    def updates(step: int) -> list[Update]:
        for group in trainee.optimizer.param_groups:
            group["lr"] = learning_rate(step, loop.steps, tb.lr, tb.warmup, tb.cosine)
        return [Update("base", lambda m: loss(step, m))]

    exports = {"model": runner} if ema is None else {"model": runner, "ema": ema}
    return StagePlan(NAME, {"base": trainee}, updates, exports)


def pretrain_tiny_base(
    config: RunConfig, ctx: DistContext, data: TensorSet, folder: Path, sizes: TinyConfig | None = None
) -> Path:
    """Train the tiny base model (see module doc; ``sizes``: its architecture, e.g. the small track's; default the
    model preset's tiny configuration) and save it to ``folder``; returns ``folder``."""
    tb = config.model.tiny_base
    tiny = sizes if sizes is not None else TINY_PRESETS[config.model.preset.value]
    model = tiny_transformer(seed=config.seed, cfg=tiny)
    if tb.steps > 0:
        every = max(1, tb.steps // 8)  # resumable
        loop = LoopConfig(steps=tb.steps, batch_size=tb.batch_size, checkpoint_every=every, keep_checkpoints=1)
        plan = _pretrain_plan(config, ctx, data, model, loop)
        work = Path(config.out) / NAME
        final = run_stage(plan, loop, config.logging, config.parallel.precision, ctx, work, resume=True)
        model = tiny_transformer(seed=config.seed, cfg=tiny)
        kept = "ema" if tb.ema_decay > 0 else "model"
        load_weights(model, final / f"{kept}.safetensors", what="tiny base model")
    if ctx.is_main:
        model.save_pretrained(folder)
        follow_umask(folder)  # safetensors writes 0600
    barrier(ctx)
    return folder
