"""A stage's data: the set it reads (checked against the model), and its batches in a resumable order."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cf_ref.seeding import derive_seed
from full.config import RunConfig
from full.data import DataError, DataOrder, SetKind, TensorSet
from full.distributed import DistContext
from full.model import CausalWanTransformer3DModel


def latent_shape(config: RunConfig, model: CausalWanTransformer3DModel) -> tuple[int, int, int, int]:
    """``(F, C, H, W)`` of one latent video of this run."""
    v = config.video
    return (v.latent_frames, model.config.in_channels, v.latent_height, v.latent_width)


def open_set(path: str | None, kind: SetKind, what: str) -> TensorSet:
    """The prepared set at ``path``; a clear error naming the setting when there is none."""
    if path is None:
        raise DataError(
            f"{what} needs a prepared {kind.value} set: set data.{'latents' if kind is SetKind.LATENTS else 'prompts'}"
        )
    return TensorSet(path, kind)


def check_text(data: TensorSet, model: CausalWanTransformer3DModel) -> None:
    """The set's text embeddings must have the model's text width."""
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


def stage_batches(
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
