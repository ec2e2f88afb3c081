r"""A KV cache of fixed shapes: preallocated slots written in place, attention over them under a key mask.

:class:`full.cache.WanKVCache` concatenates: every pass attends over ``[cached ; new]``, whose length grows
block by block (and every cache pass allocates the longer cache). A compiler then sees a new shape every
block and a CUDA graph cannot be captured at all. :class:`StaticKVCache` holds, per layer, two buffers

.. math::  K, V \in \mathbb{R}^{B \times (S + b)\,T \times H \times D_h}

— ``S`` committed frame *slots* (``sink_frames`` + ``capacity_frames``, or ``max_frames`` without a window)
followed by ``b`` *scratch* frames for the block being denoised (``T`` tokens per frame). A pass writes its
new K/V into the scratch in place (the eager float32 path computes them straight into it, :meth:`StaticLayerKV.scratch`
and :mod:`full.fused_qkv`: no copy) and attends over the whole buffer with a boolean key mask
``[1, 1, 1, (S+b)T]`` that hides the empty slots; a cache pass then copies its K/V into the slots of the
frames it commits. So every pass of a rollout presents the same shapes and the same buffers: one compiled
graph serves every block, and the per-block step can be captured as a CUDA graph (:mod:`full.graphs`).

Slots. Frame ``n`` (counting appended frames from 0) goes to slot ``n`` while ``n < sink_frames`` (kept for
good: the attention sink of :class:`full.sink.SinkKVCache`), else to slot
``sink_frames + (n - sink_frames) mod capacity_frames`` (a ring: the oldest frame is overwritten, which
is the rolling window's eviction). Keys carry RoPE at their absolute position and attention is invariant to
the order of its keys, so the ring holds exactly the keys :class:`~full.cache.WanKVCache` holds, in another
order (equal up to floating-point summation order). Slot bookkeeping (frames written, valid slots, RoPE
frame offset ``num_frames``) stays on the host as Python ints; only the mask's values change on the device.

Gradients (the self-forcing rollout). Under grad mode a pass attends over ``cat([slots, new])`` instead of
writing the scratch — the same shape, a fresh tensor, so later in-place writes never touch a tensor
autograd saved. ``append(detach=False)`` of graph-carrying K/V (``dmd.cache_gradient=published-leak``)
writes out of place (``index_copy``), and once the buffers carry a graph every write does, so an
overwritten slot's gradient is dropped exactly as :class:`~full.cache.WanKVCache` drops an evicted frame's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from full.cache import WanKVCache


@dataclass(frozen=True)
class StaticLayerKV:
    """One layer's view of a :class:`StaticKVCache` for one pass: key/value buffers ``[B, (S+b)T, H, Dh]``,
    the key mask ``[1, 1, 1, (S+b)T]`` (bool, True = attend) and ``slot_tokens = S·T`` (where the scratch
    starts)."""

    key: Tensor
    value: Tensor
    mask: Tensor
    slot_tokens: int

    def scratch(self) -> tuple[Tensor, Tensor] | None:
        """The scratch's key/value views ``[B, bT, H, Dh]`` a pass may write its new K/V into directly (then
        :meth:`keys_values` copies nothing), or None in grad mode (nothing is written in place then)."""
        if torch.is_grad_enabled() or self.key.requires_grad:
            return None
        n = self.slot_tokens
        return self.key[:, n:], self.value[:, n:]

    def keys_values(
        self, key: Tensor, value: Tensor, written: tuple[bool, bool] = (False, False)
    ) -> tuple[Tensor, Tensor]:
        """Keys/values ``[B, (S+b)T, H, Dh]`` to attend over for a pass whose new K/V are ``[B, bT, H, Dh]``:
        the buffers with the scratch overwritten in place (no grad; ``written``: key / value are already there,
        written through :meth:`scratch`), or ``[slots ; new]`` (grad mode)."""
        scratch = self.scratch()
        if scratch is None:
            n = self.slot_tokens
            return torch.cat([self.key[:, :n], key], dim=1), torch.cat([self.value[:, :n], value], dim=1)
        for dst, new, done in zip(scratch, (key, value), written, strict=True):
            if not done:
                dst.copy_(new)
        return self.key, self.value


@dataclass
class StaticKVCache(WanKVCache):
    """:class:`~full.cache.WanKVCache`'s interface over preallocated slots (see the module doc).

    ``max_frames`` bounds the frames an unbounded cache (``capacity_frames=None``) can hold; with a window the
    slots are ``sink_frames + capacity_frames``. Buffers are allocated on the first pass (batch, heads, dtype
    and device from it; the scratch from its frame count, which every later pass must share).
    """

    max_frames: int | None = None
    sink_frames: int = 0
    buffers: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    mask: Tensor | None = None
    scratch_frames: int = 0
    written: int = 0  # frames ever appended (the slot of the next one)
    exposed: bool = False  # a grad-enabled pass read the buffers since the last advance: write out of place
    mask_snapshot: Tensor | None = None  # the mask as grad-enabled passes saw it (until the next refresh)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sink_frames < 0:
            raise ValueError(f"sink_frames must be >= 0, got {self.sink_frames}")
        if self.capacity_frames is None and (self.max_frames is None or self.max_frames < 1):
            raise ValueError("a static cache without a window needs max_frames >= 1 (the frames it can hold)")

    @property
    def slots(self) -> int:
        """Committed frame slots ``S``."""
        return self.max_frames if self.capacity_frames is None else self.sink_frames + self.capacity_frames

    @property
    def cached_frames(self) -> int:
        return self._valid_slots()

    def _valid_slots(self) -> int:
        if self.capacity_frames is None:
            return self.written
        sink = min(self.written, self.sink_frames)
        return sink + min(self.written - sink, self.capacity_frames)

    def _slot(self, frame: int) -> int:
        if self.capacity_frames is None:
            if frame >= self.max_frames:
                raise ValueError(
                    f"the static cache holds {self.max_frames} frames (max_frames); frame {frame} is past it"
                )
            return frame
        if frame < self.sink_frames:
            return frame
        if self.capacity_frames == 0:
            return -1  # a window of one block keeps nothing
        return self.sink_frames + (frame - self.sink_frames) % self.capacity_frames

    # ------------------------------------------------------------------ buffers
    def layer(self, layer: int, like: Tensor, frames: int) -> StaticLayerKV:
        """This layer's :class:`StaticLayerKV` for a pass of ``frames`` frames; ``like`` ``[B, ·, H, Dh]`` gives
        batch, heads, head dim, dtype and device (buffers are allocated on first use)."""
        if self.tokens_per_frame is None:
            raise RuntimeError("bind the cache to a tokens-per-frame count before a pass")
        if self.capacity_frames is None and self.written + frames > self.max_frames:
            raise ValueError(
                f"the static cache holds {self.max_frames} frames (max_frames); a block of {frames} after "
                f"{self.written} frames needs more"
            )
        if not self.buffers:
            self._allocate(like, frames)
        elif frames != self.scratch_frames:
            raise ValueError(f"the static cache was built for passes of {self.scratch_frames} frames, got {frames}")
        key, value = self.buffers[layer]
        if key.shape[0] != like.shape[0]:
            raise ValueError(f"cache holds batch {key.shape[0]}, the block has batch {like.shape[0]}")
        mask = self.mask
        if torch.is_grad_enabled():  # autograd (a checkpointed recompute) must see these values again
            self.exposed = True
            if self.mask_snapshot is None:
                self.mask_snapshot = self.mask.clone()
            mask = self.mask_snapshot
        return StaticLayerKV(key, value, mask, self.slots * self.tokens_per_frame)

    def _allocate(self, like: Tensor, frames: int) -> None:
        b, _, heads, head_dim = like.shape
        tokens = (self.slots + frames) * self.tokens_per_frame
        opts = dict(dtype=like.dtype, device=like.device)
        self.buffers = [
            (torch.zeros(b, tokens, heads, head_dim, **opts), torch.zeros(b, tokens, heads, head_dim, **opts))
            for _ in range(self.num_layers)
        ]
        self.mask = torch.zeros(1, 1, 1, tokens, dtype=torch.bool, device=like.device)
        self.scratch_frames = frames
        self._refresh_mask()

    def _refresh_mask(self) -> None:
        """Set the key mask from the host bookkeeping. Slots fill in order (sink, then the ring) and a full ring
        stays full, so the valid slots are always the first :attr:`cached_frames`; the scratch is visible."""
        self.exposed, self.mask_snapshot = False, None
        if self.mask is None:
            return
        t = self.tokens_per_frame
        valid = torch.ones(self.slots + self.scratch_frames, dtype=torch.bool)
        valid[self._valid_slots() : self.slots] = False
        self.mask.copy_(valid.repeat_interleave(t).view(1, 1, 1, -1), non_blocking=True)

    # ------------------------------------------------------------------ WanKVCache interface
    def get(self, layer: int) -> tuple[Tensor, Tensor] | None:
        """The valid slots' ``(key, value)`` ``[B, N, H, Dh]`` in slot order (a view), or None while empty."""
        n = self._valid_slots() * (self.tokens_per_frame or 0)
        if not self.buffers or n == 0:
            return None
        key, value = self.buffers[layer]
        return key[:, :n], value[:, :n]

    def update(self, layer: int, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """K/V to attend over for a new block, ``[valid slots ; new]`` (the variable-length form; passes use
        :meth:`layer`, whose shapes are fixed). Does not write."""
        cached = self.get(layer)
        if cached is None:
            return key, value
        return torch.cat([cached[0], key], dim=1), torch.cat([cached[1], value], dim=1)

    def _runs(self, frames: int) -> list[tuple[int, int, int]]:
        """``(first new frame, first slot, length)`` of the contiguous slot runs the next ``frames`` frames fill."""
        runs: list[tuple[int, int, int]] = []
        for i in range(frames):
            slot = self._slot(self.written + i)
            if slot < 0:
                continue
            if runs and runs[-1][0] + runs[-1][2] == i and runs[-1][1] + runs[-1][2] == slot:
                runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + 1)
            else:
                runs.append((i, slot, 1))
        return runs

    def append(self, layer: int, key: Tensor, value: Tensor, detach: bool = True) -> None:
        """Write a committed block's K/V ``[B, n·T, H, Dh]`` into the slots of frames ``written … written+n-1``
        (in place, or into a copy when they carry a graph: see the module doc)."""
        if self.tokens_per_frame is None or not self.buffers:
            raise RuntimeError("a static cache is written after a pass over it (bind and allocate first)")
        t = self.tokens_per_frame
        if key.shape[1] % t:
            raise ValueError(f"{key.shape[1]} tokens is not a whole number of {t}-token frames")
        if detach:
            key, value = key.detach(), value.detach()
        buf_k, buf_v = self.buffers[layer]
        graph = key.requires_grad or value.requires_grad or buf_k.requires_grad or buf_v.requires_grad
        with torch.set_grad_enabled(graph):  # a commit runs under no_grad; a graph-carrying write must record
            if graph or self.exposed:  # out of place: autograd follows the overwrite, saved values stay
                buf_k, buf_v = buf_k.clone(), buf_v.clone()
                self.buffers[layer] = (buf_k, buf_v)
            for src, dst, n in self._runs(key.shape[1] // t):
                buf_k[:, dst * t : (dst + n) * t] = key[:, src * t : (src + n) * t]
                buf_v[:, dst * t : (dst + n) * t] = value[:, src * t : (src + n) * t]

    def advance(self, frames: int) -> None:
        """Close a cache pass that appended ``frames`` frames to every layer (host bookkeeping, mask refresh)."""
        self.written += frames
        self.num_frames += frames
        self._refresh_mask()

    def reset(self) -> None:
        """Forget every frame (buffers and their addresses are kept; graph-carrying ones are dropped)."""
        super().reset()
        self.written = 0
        self.buffers = [(k.detach(), v.detach()) for k, v in self.buffers]
        self._refresh_mask()
