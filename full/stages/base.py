"""The tiny preset's base model: a tiny random DiT trained bidirectionally on the synthetic set.

The recipes start from a *pretrained* bidirectional video model (Wan2.1-T2V-1.3B). Offline, the tiny preset
has none, so it makes one: :func:`full.tiny.tiny_transformer` trained for ``model.tiny_base.steps`` steps
with the flow-matching loss of :mod:`full.stages.ar_diffusion` in bidirectional mode (one σ per video,
uniform weight; the caption replaced by the negative prompt's embedding with probability
``caption_dropout``, so that classifier-free guidance has an unconditional model to extrapolate from,
as in text-to-video pretraining), then written as a diffusers folder ``<out>/base-model`` that every stage loads like a real
checkpoint. Not part of the published pipeline.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from cf_ref.masks import AttentionMode
from cf_ref.schedule import Granularity, LossWeighting
from full.checkpoint import load_weights
from full.config import LoopConfig, OptimizerConfig, RunConfig
from full.data import TensorSet
from full.distributed import DistContext, barrier
from full.stages import common
from full.stages.ar_diffusion import denoising_loss
from full.train import StagePlan, Trainee, Update, make_optimizer, run_stage

NAME = "base-pretrain"


def pretrain_tiny_base(config: RunConfig, ctx: DistContext, data: TensorSet, folder: Path) -> Path:
    """Train the tiny base model (see module doc) and save it to ``folder``; returns ``folder``."""
    from full.tiny import tiny_transformer

    tb = config.model.tiny_base
    model = tiny_transformer(seed=config.seed)
    if tb.steps > 0:
        runner = common.trainable(
            model,
            dataclasses.replace(config, parallel=dataclasses.replace(config.parallel, gradient_checkpointing=False)),
            ctx,
        )
        optim = OptimizerConfig(lr=tb.lr, betas=(0.9, 0.999), weight_decay=0.0, max_grad_norm=1.0)
        trainee = Trainee("base", runner, make_optimizer(runner, optim), optim.max_grad_norm)
        loop = LoopConfig(steps=tb.steps, batch_size=tb.batch_size, checkpoint_every=tb.steps, keep_checkpoints=1)
        feed = common.batches(data, config, ctx, loop.batch_size, loop.grad_accum, NAME)

        def loss(step: int, micro: int):
            batch = feed.fetch(step, micro)
            rnd = common.step_random(config, ctx, NAME, step, micro, "loss")
            drop = torch.rand(batch["text"].shape[0], generator=rnd.cpu) < tb.caption_dropout  # learn p(x) too
            batch["text"] = torch.where(
                drop[:, None, None].to(batch["text"].device), feed.negative(len(drop)), batch["text"]
            )
            args = (AttentionMode.BIDIRECTIONAL, Granularity.SAMPLE, LossWeighting.UNIFORM, 1, config.model.shift, None)
            return denoising_loss(runner, batch, rnd, *args), {}

        plan = StagePlan(
            NAME, {"base": trainee}, lambda step: [Update("base", lambda m: loss(step, m))], {"model": runner}
        )
        work = Path(config.out) / NAME
        final = run_stage(plan, loop, config.logging, config.parallel.precision, ctx, work, resume=True)
        model = tiny_transformer(seed=config.seed)
        load_weights(model, final / "model.safetensors", what="tiny base model")
    if ctx.is_main:
        model.save_pretrained(folder)
    barrier(ctx)
    return folder
