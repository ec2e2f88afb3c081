"""The stages' models: the base transformer loaded from a folder, a stage's weights on top, and the wrappers
that make a model trainable (gradient checkpointing, DDP / FSDP2) or frozen (placed and cast like the trained
ones). Every wrapped model is a :class:`~full.distributed.Runner`, so DDP and FSDP2 see each call."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from full.checkpoint import load_weights
from full.config import Parallelism, Precision, RunConfig
from full.distributed import DistContext, place_frozen, wrap_trainable
from full.dtypes import cast_keeping_fp32
from full.model import CausalWanTransformer3DModel
from full.model_files import load_transformer


def base_model_dir(config: RunConfig) -> Path:
    """Folder of the bidirectional base transformer: ``model.path`` (or its ``transformer/``), or the tiny one."""
    if config.model.preset is not None:  # every preset builds tiny models in code
        return Path(config.out) / "base-model"
    return Path(config.model.path)


def load_model(path: str | Path, what: str) -> CausalWanTransformer3DModel:
    """A causal Wan transformer from a local diffusers-format folder — a transformer folder or a pipeline
    folder with ``transformer/`` — in fp32 on the CPU."""
    return load_transformer(path, what, torch.float32)


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
