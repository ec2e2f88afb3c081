r"""One draw per sample, per block or per frame: the granularity of training's random choices.

A training sample ``x: [B, F, *S]`` gets its noise levels (:func:`sample_training_sigmas`) or its grid / state
indices (:func:`sample_indices`) at one :class:`Granularity`: one value per sample shared by all frames, one per
block of ``b`` frames (frames ``i`` with the same ``i // b``, :func:`block_ids`), or one per frame; either way the
result is per frame, ``[B, F]``. Which granularity each stage of each recipe uses is in :mod:`cf_ref.recipes`.
"""

from __future__ import annotations

import enum

import torch
from torch import Tensor

from cf_ref.schedule import NUM_TRAIN_TIMESTEPS, shift_sigma


class Granularity(enum.Enum):
    """How many independent noise levels a training sample gets."""

    SAMPLE = "sample"  # one σ per sample, shared by all frames
    FRAME = "frame"  # one σ per frame
    BLOCK = "block"  # one σ per block of ``block_size`` frames


def block_ids(num_frames: int, block_size: int) -> Tensor:
    """Block index of every frame: ``[F]`` long tensor ``[0,…,0,1,…,1,…]`` (``block_size`` each).

    Raises if ``block_size`` does not divide ``num_frames``.
    """
    if block_size < 1 or num_frames < 1:
        raise ValueError(f"num_frames and block_size must be >= 1, got {num_frames}, {block_size}")
    if num_frames % block_size:
        raise ValueError(
            f"block size {block_size} does not divide the number of frames {num_frames}; "
            f"use a frame count that is a multiple of {block_size}"
        )
    return torch.arange(num_frames) // block_size


def sample_indices(
    batch_size: int,
    num_frames: int,
    num_choices: int,
    granularity: Granularity = Granularity.BLOCK,
    block_size: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Uniform draws in [0, num_choices), one per sample, per block of ``block_size`` frames or per frame,
    repeated over the frames that share it: ``[B, F]`` long.

    Used to pick a trajectory state (ODE distillation), a grid step (consistency distillation) or a few-step
    level (CausVid's generator input). ``SAMPLE`` draws ``[B, 1]``, ``BLOCK`` ``[B, F/b]``, ``FRAME`` ``[B, F]``
    values from ``generator`` (in that shape, so a draw per sample consumes the generator as a draw per block
    with ``b = F`` does).
    """
    if num_choices < 1:
        raise ValueError(
            f"num_choices must be >= 1 (the number of states or grid steps to pick from), got {num_choices}"
        )
    if not isinstance(granularity, Granularity):
        raise ValueError(f"granularity must be a Granularity member, got {granularity!r}")
    per = {Granularity.SAMPLE: num_frames, Granularity.BLOCK: block_size, Granularity.FRAME: 1}[granularity]
    blk = block_ids(num_frames, per)
    per_block = torch.randint(0, num_choices, (batch_size, int(blk[-1]) + 1), generator=generator)
    return per_block[:, blk]


def expand_per_block(values: Tensor, block_size: int) -> Tensor:
    """Repeat per-block values ``[B, F/b]`` to per-frame values ``[B, F]``: ``out[:, i] = values[:, i // b]``."""
    if values.ndim != 2 or block_size < 1:
        raise ValueError(f"need per-block values [B, F/b] and block_size >= 1, got {tuple(values.shape)}, {block_size}")
    return torch.repeat_interleave(values, block_size, dim=1)


def sample_training_sigmas(
    batch_size: int,
    num_frames: int,
    granularity: Granularity = Granularity.BLOCK,
    block_size: int = 1,
    shift: float = 1.0,
    t_min: float = 0.0,
    t_max: float = NUM_TRAIN_TIMESTEPS,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Training noise levels ``[B, F]``: :math:`\sigma = \mathrm{clamp}(\mathrm{shift}(u),\ t_{min}/1000,\ t_{max}/1000)`,
    ``u ~ U[0, 1)``.

    One draw per sample, per frame or per block (``granularity``); per-block draws require ``block_size`` to
    divide ``num_frames``. The clamp comes *after* the shift, as in the authors' DMD (``model/dmd.py`` of
    thu-ml/Causal-Forcing draws ``t ~ U{0…999}``, shifts it, then clamps it to ``[20, 980]``); with the default
    ``[0, 1000]`` it is the plain shifted uniform of flow-matching training.
    """
    if not 0 <= t_min < t_max <= NUM_TRAIN_TIMESTEPS:
        raise ValueError(f"need 0 <= t_min < t_max <= {NUM_TRAIN_TIMESTEPS}, got {t_min}, {t_max}")
    if not isinstance(granularity, Granularity):
        raise ValueError(f"granularity must be a Granularity member, got {granularity!r}")
    if granularity is Granularity.SAMPLE:
        n = 1
    elif granularity is Granularity.FRAME:
        n = num_frames
    else:
        n = int(block_ids(num_frames, block_size)[-1]) + 1
    u = torch.rand(batch_size, n, generator=generator, dtype=torch.float64)
    s = shift_sigma(u, shift).clamp(t_min / NUM_TRAIN_TIMESTEPS, t_max / NUM_TRAIN_TIMESTEPS)
    if granularity is Granularity.SAMPLE:
        s = s.expand(batch_size, num_frames)
    elif granularity is Granularity.BLOCK:
        s = expand_per_block(s, block_size)
    return s.to(device=device, dtype=dtype).contiguous()
