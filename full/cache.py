r"""Caches for block-by-block causal inference with the Wan DiT.

Two things are computed once and reused while a video is generated block by block:

* :class:`WanKVCache` — per-layer **self-attention** keys/values of the frames already committed, after
  the q/k RMS-norm and after RoPE (each key carries its absolute frame position), shape
  ``[B, N, H, Dh]`` with ``N = cached_frames · T`` tokens (``T`` tokens per latent frame). A committed
  block is appended by one extra forward pass over the finished block (the σ = 0 "cache pass"). With a
  ``capacity_frames`` bound the oldest frames are evicted (rolling cache for long videos).
* :class:`TextContext` — the projected prompt and, optionally, every layer's **cross-attention** K/V,
  computed once per prompt.

The names follow diffusers' ``WanKVCache`` proposal (huggingface/diffusers PR 13681: a per-block
container with ``update``/``reset``, post-RoPE keys, a token window) so the design could move upstream;
what differs is that reads and writes are separate (a denoising call reads the cache, only the cache pass
appends), which is what the self-forcing training rollout needs: the cache holds no autograd graph (unless
asked to, for the authors' leaked gradient: :mod:`full.cache_gradient`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class LayerKV:
    """One layer's cached self-attention keys and values, ``[B, N, H, Dh]`` each (None while empty)."""

    key: Tensor | None = None
    value: Tensor | None = None

    def reset(self) -> None:
        self.key = None
        self.value = None


@dataclass
class WanKVCache:
    r"""Self-attention K/V of committed frames for every transformer layer.

    * ``num_frames`` — absolute number of frames committed so far; the next block starts at RoPE frame
      position ``num_frames``.
    * ``origin`` — absolute frame index of rollout block 0 (frames before it were pre-filled, e.g. the
      image of image-to-video); :meth:`rebase` moves it to the end of the cache.
    * ``capacity_frames`` — at most this many frames are kept (None = unbounded). With a window of ``w``
      blocks of ``b`` frames (query block included, as in :func:`cf_ref.masks.block_causal_visibility`)
      the capacity is ``(w-1)·b``.

    A cache pass hands every layer's new K/V to the model, which appends them after the pass
    (:meth:`append`) and closes it (:meth:`advance`); denoising passes only read (:meth:`get`).
    """

    num_layers: int
    tokens_per_frame: int | None = None
    capacity_frames: int | None = None
    layers: list[LayerKV] = field(default_factory=list)
    num_frames: int = 0
    origin: int = 0

    def __post_init__(self) -> None:
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
        if self.tokens_per_frame is not None and self.tokens_per_frame < 1:
            raise ValueError(f"tokens_per_frame must be >= 1, got {self.tokens_per_frame}")
        if self.capacity_frames is not None and self.capacity_frames < 0:
            raise ValueError(f"capacity_frames must be >= 0 or None, got {self.capacity_frames}")
        if not self.layers:
            self.layers = [LayerKV() for _ in range(self.num_layers)]

    def bind(self, tokens_per_frame: int) -> None:
        """Fix the tokens per frame on first use; later blocks must match (same latent size)."""
        if self.tokens_per_frame is None:
            self.tokens_per_frame = tokens_per_frame
        elif self.tokens_per_frame != tokens_per_frame:
            raise ValueError(
                f"the cache holds frames of {self.tokens_per_frame} tokens, this block has {tokens_per_frame} per frame"
            )

    @property
    def cached_frames(self) -> int:
        """Frames currently held (≤ ``num_frames``; smaller once the rolling window evicted some)."""
        k = self.layers[0].key
        return 0 if k is None or self.tokens_per_frame is None else k.shape[1] // self.tokens_per_frame

    def stored(self, layer: int) -> tuple[Tensor, Tensor] | None:
        """``(key, value)`` of ``layer`` as stored (``[B, N, H, Dh]``), or None while empty."""
        kv = self.layers[layer]
        return None if kv.key is None else (kv.key, kv.value)

    def get(self, layer: int) -> tuple[Tensor, Tensor] | None:
        """Cached ``(key, value)`` of ``layer`` a block attends to (``[B, N, H, Dh]``), or None while empty."""
        return self.stored(layer)

    def update(self, layer: int, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """K/V to attend over for a new block: ``[cached ; new]`` along tokens. Does not write."""
        cached = self.stored(layer)
        if cached is None:
            return key, value
        if cached[0].shape[0] != key.shape[0]:
            raise ValueError(f"cache holds batch {cached[0].shape[0]}, the block has batch {key.shape[0]}")
        return torch.cat([cached[0], key], dim=1), torch.cat([cached[1], value], dim=1)

    def append(self, layer: int, key: Tensor, value: Tensor, detach: bool = True) -> None:
        """Append a committed block's K/V ``[B, n, H, Dh]`` and evict beyond the capacity. ``detach=False`` keeps
        their autograd graph (the ``published-leak`` option of :class:`cf_ref.rollout.CacheGradient`)."""
        if self.tokens_per_frame is None:
            raise RuntimeError("bind the cache to a tokens-per-frame count before writing")
        if key.shape[1] % self.tokens_per_frame:
            raise ValueError(f"{key.shape[1]} tokens is not a whole number of {self.tokens_per_frame}-token frames")
        if detach:
            key, value = key.detach(), value.detach()
        with torch.enable_grad():  # commits run under no_grad: keep the graph the cache already carries, if any
            key, value = self.update(layer, key, value)
            if self.capacity_frames is not None:
                keep = self.capacity_frames * self.tokens_per_frame
                start = max(0, key.shape[1] - keep)
                key, value = key[:, start:], value[:, start:]
        self.layers[layer].key, self.layers[layer].value = key, value

    def advance(self, frames: int) -> None:
        """Close a cache pass that appended ``frames`` frames to every layer."""
        lengths = {kv.key.shape[1] if kv.key is not None else 0 for kv in self.layers}
        if len(lengths) != 1:
            raise RuntimeError(f"cache pass left layers with different lengths {sorted(lengths)}")
        self.num_frames += frames

    def rebase(self) -> None:
        """Number rollout blocks from the current end of the cache (after pre-filled frames)."""
        self.origin = self.num_frames

    def reset(self) -> None:
        """Empty every layer (between videos)."""
        for kv in self.layers:
            kv.reset()
        self.num_frames = 0
        self.origin = 0


@dataclass(frozen=True)
class TextContext:
    r"""A prompt as the DiT's cross-attention sees it.

    hidden: ``[B, L, D]`` the text after the model's text projection; keys/values: per layer
    ``[B, L, H, Dh]`` cross-attention K/V (after ``norm_k``), or None to project them on every call;
    dtype: the dtype of the raw text embeddings (Wan casts the time embedding to it).
    """

    hidden: Tensor
    dtype: torch.dtype
    keys: tuple[Tensor, ...] | None = None
    values: tuple[Tensor, ...] | None = None

    @property
    def batch_size(self) -> int:
        return self.hidden.shape[0]
