"""Sample videos during training: a stage's model sampled on fixed prompts and noise, written as previews.

Students are sampled with their few-step list (:meth:`cf_ref.schedule.FewStepSchedule.student_sigmas`), the AR
teacher with guided Euler on the teacher grid (:meth:`~cf_ref.schedule.FewStepSchedule.grid`), both block by block
with the KV cache (:mod:`cf_ref.rollout`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from cf_ref.rollout import ar_ode_sample, few_step_rollout
from cf_ref.schedule import FewStepSchedule
from cf_ref.seeding import generator
from full.blockwise import GuidedBlockwise
from full.config import RunConfig
from full.data import TensorSet
from full.distributed import DistContext, barrier
from full.logs import write_samples
from full.model import CausalWanTransformer3DModel
from full.stages.fields import kv_blockwise

Generate = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``generate(text [B, L, D], negative [B, L, D], noise [B, F, C, H, W]) -> latents [B, F, C, H, W]``."""


def few_step_sample(
    runner: nn.Module, config: RunConfig, text: Tensor, noise: Tensor, first_block_steps: int | None = None
) -> Tensor:
    """Few-step AR sampling with the KV cache (inference: every step without gradient), the first block on the
    uniform ``first_block_steps``-step list if given. Returns ``[B, F, C, H, W]``."""
    b = config.model.block_size
    first = None
    if first_block_steps is not None:
        first = FewStepSchedule.uniform(first_block_steps, config.schedule.shift).student_sigmas(torch.float32)

    def sample(m: CausalWanTransformer3DModel) -> Tensor:
        with torch.no_grad():
            bw = kv_blockwise(m, text, b)
            sigmas = config.schedule.student_sigmas(torch.float32).to(noise.device)
            firsts = None if first is None else first.to(noise.device)
            return few_step_rollout(bw, noise, b, sigmas, bw.new_cache(), first_sigmas=firsts).x0

    return runner(sample)


def ar_teacher_sample(
    runner: nn.Module, config: RunConfig, text: Tensor, negative: Tensor, noise: Tensor, scale: float
) -> Tensor:
    """Multi-step AR sampling of a diffusion model with CFG and the KV cache (Euler on the schedule's grid)."""
    b = config.model.block_size
    grid = config.schedule.grid(torch.float32).to(noise.device)

    def sample(m: CausalWanTransformer3DModel) -> Tensor:
        with torch.no_grad():
            bw = GuidedBlockwise(kv_blockwise(m, torch.cat([text, negative]), b), scale)
            return ar_ode_sample(bw, noise, b, grid, bw.new_cache()).x0

    return runner(sample)


def _vae_loader(config: RunConfig) -> Callable[[], object | None]:
    """The decoder of ``logging.vae`` (None: latent previews), loaded on first use."""
    vae = []

    def decoder():
        if config.logging.vae is None:
            return None
        if not vae:
            from full.prepare import load_vae

            path = Path(config.logging.vae)
            vae.append(load_vae(vae=path) if (path / "config.json").is_file() else load_vae(root=path))
        return vae[0]

    return decoder


def preview_sampler(
    config: RunConfig, ctx: DistContext, data: TensorSet, shape: tuple[int, int, int, int], generate: Generate
) -> Callable[[int, Path], None]:
    """A stage's ``sample(step, folder)``: the first ``sample_count`` prompts of ``data``, fixed noise, every
    process generates (FSDP needs all of them), rank 0 writes MP4 previews (:func:`full.logs.write_samples`)."""
    count = min(config.logging.sample_count, len(data))
    decoder = _vae_loader(config)  # rank 0 only: called under is_main

    def sample(step: int, folder: Path) -> None:
        text = data.fetch(list(range(count)), ["text"])["text"].to(ctx.device)
        negative = data.negative.to(ctx.device)[None].expand(count, -1, -1)
        noise = torch.randn((count, *shape), generator=generator(ctx.device, config.seed, "samples"), device=ctx.device)
        with torch.no_grad():
            latents = generate(text, negative, noise)
        if ctx.is_main:
            write_samples(folder, latents.float().cpu(), data.captions[:count], vae=decoder())
        barrier(ctx)

    return sample
