"""What the stages share: models (loaded, wrapped), velocity fields, batches, per-step randomness, samples.

Velocity fields follow :data:`cf_ref.solvers.VelocityField`, ``field(x [B, F, C, H, W], sigma) -> v``, with
the text, the attention mode and (teacher forcing) the clean context closed over — exactly what
``cf_ref.losses`` / ``cf_ref.distill`` / ``cf_ref.solvers`` take. Every call goes through the model's
:class:`~full.distributed.Runner`, so DDP and FSDP2 see it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from cf_ref.masks import AttentionMode
from cf_ref.rollout import ar_ode_sample, few_step_rollout
from cf_ref.schedule import few_step_sigmas, sigma_grid
from cf_ref.seeding import derive_seed, generator
from cf_ref.solvers import VelocityField, guided
from full.checkpoint import load_weights
from full.config import ModelPreset, Parallelism, Precision, RunConfig
from full.data import DataError, DataOrder, SetKind, SyntheticSpec, TensorSet, write_synthetic_latents
from full.distributed import DistContext, barrier, broadcast_object, place_frozen, wrap_trainable
from full.logs import write_samples
from full.model import CausalWanBlockwise, CausalWanTransformer3DModel, GuidedBlockwise, cast_keeping_fp32

# --------------------------------------------------------------------------------------------- models


def base_model_dir(config: RunConfig) -> Path:
    """Folder of the bidirectional base transformer: ``model.path`` (or its ``transformer/``), or the tiny one."""
    if config.model.preset is ModelPreset.TINY:
        return Path(config.out) / "base-model"
    return Path(config.model.path)


def prepare_assets(config: RunConfig, ctx: DistContext) -> RunConfig:
    """With the tiny preset: write the synthetic latent set (unless ``data.latents`` is given) and the tiny base
    model trained on it (:mod:`full.stages.base`) under ``<out>``, once; point the configuration at the set.
    Returns the configuration to run."""
    if config.model.preset is not ModelPreset.TINY:
        return config
    from full.tiny import TINY

    base = base_model_dir(config)
    data = Path(config.data.latents) if config.data.latents else Path(config.out) / "data" / "latents"
    if ctx.is_main and config.data.latents is None and not (data / "index.json").is_file():
        v = config.video
        spec = SyntheticSpec(
            count=config.model.tiny_base.videos,
            frames=v.latent_frames,
            channels=TINY.latent_channels,
            height=v.latent_height,
            width=v.latent_width,
            text_length=TINY.text_length,
            text_dim=TINY.text_dim,
            seed=config.seed,
        )
        write_synthetic_latents(data, spec)
    barrier(ctx)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, latents=str(data)))
    # Every process must take the same branch (it runs collectives): rank 0 looks, the others follow.
    if broadcast_object(ctx, not (base / "config.json").is_file()):
        from full.stages.base import pretrain_tiny_base

        pretrain_tiny_base(config, ctx, TensorSet(data, SetKind.LATENTS), base)
    return config


def load_model(path: str | Path, what: str) -> CausalWanTransformer3DModel:
    """A causal Wan transformer from a local diffusers-format folder — a transformer folder or a pipeline
    folder with ``transformer/`` — in fp32 on the CPU."""
    path = Path(path)
    if (path / "transformer" / "config.json").is_file():
        path = path / "transformer"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{what}: {path} is not a diffusers transformer folder (no config.json)")
    return CausalWanTransformer3DModel.from_pretrained(path, local_files_only=True, torch_dtype=torch.float32)


def build_model(config: RunConfig, init: Path | None, what: str) -> CausalWanTransformer3DModel:
    """The base model's architecture with the base weights, or with ``init`` (a stage's safetensors) on top."""
    model = load_model(base_model_dir(config), f"{what} (base model)")
    if init is not None:
        load_weights(model, init, what=f"{what} weights")
    return model


def trainable(model: CausalWanTransformer3DModel, config: RunConfig, ctx: DistContext) -> nn.Module:
    """Gradient checkpointing per config, then DDP / FSDP2 per config (a :class:`Runner`)."""
    if config.parallel.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    p = config.parallel
    return wrap_trainable(model, ctx, p.strategy, p.precision, blocks=list(model.blocks))


def frozen(model: CausalWanTransformer3DModel, config: RunConfig, ctx: DistContext, cast: bool = True) -> nn.Module:
    """A frozen copy placed like the trained ones. With ``cast`` under bf16 and not sharded, the weights are
    stored in bf16 (as ``from_pretrained(torch_dtype=bf16)`` would: ``_keep_in_fp32_modules`` stay fp32);
    FSDP2 keeps fp32 shards (one dtype per group) and computes in bf16. EMA copies pass ``cast=False``."""
    p = config.parallel
    sharded = ctx.enabled and p.strategy is Parallelism.FSDP
    if cast and p.precision is Precision.BF16 and not sharded:
        cast_keeping_fp32(model, torch.bfloat16)
    return place_frozen(model, ctx, p.strategy, p.precision, blocks=list(model.blocks))


# --------------------------------------------------------------------------------------------- fields


def velocity_field(
    runner: nn.Module, text: Tensor, mode: AttentionMode, block_size: int, clean: Tensor | None = None
) -> VelocityField:
    """:math:`v_\\theta(x, \\sigma \\mid \\text{text}[, \\text{clean}])` through the runner."""

    def field(x: Tensor, sigma: Tensor) -> Tensor:
        return runner(lambda m: m.velocity(x, sigma, text, mode=mode, block_size=block_size, clean=clean))

    return field


def guided_field(
    runner: nn.Module,
    text: Tensor,
    negative: Tensor,
    scale: float,
    mode: AttentionMode,
    block_size: int,
    clean: Tensor | None = None,
) -> VelocityField:
    """Classifier-free guidance :math:`v_\\varnothing + w(v_c - v_\\varnothing)` in one batched call (cond ; uncond).

    text: ``[B, L, D]``; negative: ``[B, L, D]`` (the negative prompt's embedding per sample).
    """
    if scale == 1.0:
        return velocity_field(runner, text, mode, block_size, clean)
    both_text = torch.cat([text, negative])
    both_clean = None if clean is None else torch.cat([clean, clean])
    return guided(velocity_field(runner, both_text, mode, block_size, both_clean), scale)


# --------------------------------------------------------------------------------------------- data and randomness


def latent_shape(config: RunConfig, model: CausalWanTransformer3DModel) -> tuple[int, int, int, int]:
    v = config.video
    return (v.latent_frames, model.config.in_channels, v.latent_height, v.latent_width)


def open_set(path: str | None, kind: SetKind, what: str) -> TensorSet:
    if path is None:
        raise DataError(
            f"{what} needs a prepared {kind.value} set: set data.{'latents' if kind is SetKind.LATENTS else 'prompts'}"
        )
    return TensorSet(path, kind)


def check_text(data: TensorSet, model: CausalWanTransformer3DModel) -> None:
    d = model.config.text_dim
    if data.fields["text"][-1] != d:
        raise DataError(f"{data.path}: text embeddings have width {data.fields['text'][-1]}, the model expects {d}")


@dataclass(frozen=True)
class Batches:
    """A set and its resumable order: ``fetch(step, micro)`` → tensors on the device."""

    data: TensorSet
    order: DataOrder
    device: torch.device

    def fetch(self, step: int, micro: int, fields: tuple[str, ...] | None = None) -> dict[str, Tensor]:
        batch = self.data.fetch(self.order.batch(step, micro), fields)
        return {k: v.to(self.device, torch.float32) for k, v in batch.items()}

    def negative(self, batch_size: int) -> Tensor:
        """The negative prompt's embedding repeated over the batch: ``[B, L, D]``."""
        return self.data.negative.to(self.device, torch.float32)[None].expand(batch_size, -1, -1)


def batches(
    data: TensorSet, config: RunConfig, ctx: DistContext, batch_size: int, grad_accum: int, stage: str
) -> Batches:
    """The stage's :class:`Batches` over ``data`` for this process (resumable order, see :class:`DataOrder`)."""
    order = DataOrder(
        num_samples=len(data),
        batch_size=batch_size,
        seed=derive_seed(config.seed, stage) % (1 << 31),  # each stage its own order
        rank=ctx.rank,
        world_size=ctx.world_size,
        grad_accum=grad_accum,
    )
    return Batches(data, order, ctx.device)


@dataclass(frozen=True)
class StepRandom:
    """The generators of one micro-batch: ``cpu``/``device`` for per-process draws, ``shared`` for draws every
    process must agree on (it leaves the rank out)."""

    cpu: torch.Generator
    device: torch.Generator
    shared: torch.Generator

    def normal(self, shape: tuple[int, ...] | torch.Size, device: torch.device) -> Tensor:
        """Standard normal noise from the per-process device generator."""
        return torch.randn(tuple(shape), generator=self.device, device=device)


def step_random(config: RunConfig, ctx: DistContext, stage: str, step: int, micro: int, purpose: str) -> StepRandom:
    """The generators of micro-batch ``micro`` of ``step`` (see :mod:`cf_ref.seeding`)."""
    parts = (config.seed, stage, step, micro, purpose)
    return StepRandom(
        cpu=generator("cpu", *parts, ctx.rank),
        device=generator(ctx.device, *parts, ctx.rank),
        shared=generator("cpu", *parts, "shared"),
    )


# --------------------------------------------------------------------------------------------- sampling


def kv_blockwise(model: CausalWanTransformer3DModel, text: Tensor, block_size: int) -> CausalWanBlockwise:
    """The model's KV-cache adapter (a :class:`cf_ref.rollout.BlockwiseModel`) for ``text [B, L, D]``.

    Unlike ``model.blockwise`` it does not precompute the prompt's cross-attention K/V: each block computes
    them inside its own forward. So every weight is used inside a forward that DDP / FSDP2 see (FSDP2
    gathers a block's weights only there), and a rollout's gradient reaches the text projection and the
    cross-attention weights. The published trainer caches them at the rollout's first call, which carries
    gradient only when the sampled exit step is 0.
    """
    return CausalWanBlockwise(model, model.text_context(text), block_size, None)


def student_sigmas(config: RunConfig) -> Tensor:
    """The few-step σ list ``[K]`` (shifted), float32."""
    return few_step_sigmas(config.model.few_step_timesteps, config.model.shift).float()


def few_step_sample(runner: nn.Module, config: RunConfig, text: Tensor, noise: Tensor) -> Tensor:
    """Few-step AR sampling with the KV cache (inference: every step without gradient). Returns ``[B, F, C, H, W]``."""
    b = config.model.block_size

    def sample(m: CausalWanTransformer3DModel) -> Tensor:
        with torch.no_grad():
            bw = kv_blockwise(m, text, b)
            return few_step_rollout(bw, noise, b, student_sigmas(config).to(noise.device), bw.new_cache()).x0

    return runner(sample)


def ar_teacher_sample(
    runner: nn.Module, config: RunConfig, text: Tensor, negative: Tensor, noise: Tensor, num_steps: int, scale: float
) -> Tensor:
    """Multi-step AR sampling of a diffusion model with CFG and the KV cache (Euler on the shifted grid)."""
    b = config.model.block_size
    grid = sigma_grid(num_steps, config.model.shift).float().to(noise.device)

    def sample(m: CausalWanTransformer3DModel) -> Tensor:
        with torch.no_grad():
            bw = GuidedBlockwise(kv_blockwise(m, torch.cat([text, negative]), b), scale)
            return ar_ode_sample(bw, noise, b, grid, bw.new_cache()).x0

    return runner(sample)


def sampler(
    config: RunConfig,
    ctx: DistContext,
    data: TensorSet,
    shape: tuple[int, int, int, int],
    generate: Callable[[Tensor, Tensor, Tensor], Tensor],
) -> Callable[[int, Path], None]:
    """A stage's ``sample(step, folder)``: the first ``sample_count`` prompts of ``data``, fixed noise, every
    process generates (FSDP needs all of them), rank 0 writes MP4 previews (:func:`full.logs.write_samples`)."""
    count = min(config.logging.sample_count, len(data))
    vae = []  # loaded on first use, rank 0 only

    def decoder():
        if config.logging.vae is None:
            return None
        if not vae:
            from full.prepare import load_vae

            path = Path(config.logging.vae)
            vae.append(load_vae(vae=path) if (path / "config.json").is_file() else load_vae(root=path))
        return vae[0]

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
