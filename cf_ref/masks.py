r"""Frame-block attention masks: one definition for the toy networks and the video DiT.

A *frame visibility* is a boolean matrix ``vis[i, j]`` = "query frame i may attend to key frame j".
Frames are grouped in blocks of ``b`` consecutive frames (b = 1 frame-wise, b = 3 chunk-wise);
``block(i) = i // b``.

* bidirectional: every frame sees every frame;
* block-causal: :math:`\mathrm{vis}[i,j] = [\,\mathrm{block}(j) \le \mathrm{block}(i)\,]`, optionally
  limited to the last ``window`` blocks (a rolling KV cache);
* teacher forcing, over the sequence ``[clean_0 … clean_{F-1} ; noisy_0 … noisy_{F-1}]`` (2F frames):
  clean frame i sees clean frames of blocks ≤ block(i); noisy frame i sees clean frames of blocks
  < block(i) and noisy frames of its own block. Nothing sees a noisy frame of another block.

:func:`token_mask` expands a frame visibility to tokens (each frame = ``T`` consecutive tokens), in
the boolean convention of :func:`torch.nn.functional.scaled_dot_product_attention` (True = attend).
"""

from __future__ import annotations

import enum

import torch
from einops import repeat
from torch import Tensor

from cf_ref.granularity import block_ids


class AttentionMode(enum.Enum):
    BIDIRECTIONAL = "bidirectional"
    BLOCK_CAUSAL = "block_causal"
    TEACHER_FORCING = "teacher_forcing"


def bidirectional_visibility(num_frames: int) -> Tensor:
    """All-True ``[F, F]``."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    return torch.ones(num_frames, num_frames, dtype=torch.bool)


def block_causal_visibility(num_frames: int, block_size: int = 1, window: int | None = None) -> Tensor:
    r"""``[F, F]``: :math:`\mathrm{block}(i) - w < \mathrm{block}(j) \le \mathrm{block}(i)`.

    ``window`` (in blocks, ``None`` = unbounded) keeps only the last ``window`` blocks including the
    query's own, which is what a rolling KV cache of ``window`` blocks can see.
    """
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1 block or None, got {window}")
    blk = block_ids(num_frames, block_size)
    q, k = blk[:, None], blk[None, :]
    vis = k <= q
    if window is not None:
        vis &= k > q - window
    return vis


def teacher_forcing_visibility(num_frames: int, block_size: int = 1) -> Tensor:
    """``[2F, 2F]`` over ``[clean ; noisy]`` (see module doc). Rows/columns ``:F`` are clean, ``F:`` noisy."""
    blk = block_ids(num_frames, block_size)
    q, k = blk[:, None], blk[None, :]
    clean_to_clean = k <= q
    noisy_to_clean = k < q
    noisy_to_noisy = k == q
    clean_to_noisy = torch.zeros_like(clean_to_clean)
    top = torch.cat([clean_to_clean, clean_to_noisy], dim=1)
    bottom = torch.cat([noisy_to_clean, noisy_to_noisy], dim=1)
    return torch.cat([top, bottom], dim=0)


def frame_visibility(mode: AttentionMode, num_frames: int, block_size: int = 1, window: int | None = None) -> Tensor:
    """Dispatch on ``mode``: ``[F, F]`` (bidirectional, block-causal) or ``[2F, 2F]`` (teacher forcing)."""
    if mode is AttentionMode.BIDIRECTIONAL:
        return bidirectional_visibility(num_frames)
    if mode is AttentionMode.BLOCK_CAUSAL:
        return block_causal_visibility(num_frames, block_size, window)
    if mode is AttentionMode.TEACHER_FORCING:
        if window is not None:
            raise ValueError("teacher forcing trains on the full clean history; window is not supported")
        return teacher_forcing_visibility(num_frames, block_size)
    raise ValueError(f"unknown attention mode {mode!r}")


def token_mask(visibility: Tensor, tokens_per_frame: int, key_tokens_per_frame: int | None = None) -> Tensor:
    """Expand a frame visibility ``[Fq, Fk]`` to a token mask ``[Fq·T, Fk·T']`` (True = may attend).

    Token ``n`` of the query sequence belongs to frame ``n // T`` (frame-major token order, as in Wan's
    patchified latents ``(f h w)``).
    """
    if visibility.dtype != torch.bool or visibility.ndim != 2:
        raise ValueError(f"visibility must be a 2-D bool tensor, got {visibility.dtype} {tuple(visibility.shape)}")
    if tokens_per_frame < 1:
        raise ValueError(f"tokens_per_frame must be >= 1, got {tokens_per_frame}")
    tk = tokens_per_frame if key_tokens_per_frame is None else key_tokens_per_frame
    return repeat(visibility, "fq fk -> (fq tq) (fk tk)", tq=tokens_per_frame, tk=tk)
