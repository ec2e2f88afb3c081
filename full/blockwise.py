"""The causal Wan DiT block by block over a KV cache: :class:`CausalWanBlockwise` (a
:class:`cf_ref.rollout.BlockwiseModel`, what ``CausalWanTransformer3DModel.blockwise`` returns) and its CFG
wrapper :class:`GuidedBlockwise` (``guided_blockwise``).

A block of ``b`` frames at RoPE positions ``n … n+b-1`` (``n`` = frames already committed) attends to the cached
K/V of the committed frames and to itself; ``commit`` runs the finished block once more (σ = 0, or the
context-noise level) and appends its K/V. Cross-attention K/V are computed once per prompt. A ``window`` of
``w`` blocks keeps the last ``w-1`` blocks in the cache (rolling cache), matching
``block_causal_visibility(..., window=w)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cf_ref.schedule import sigma_per_frame, timestep_from_sigma
from cf_ref.solvers import guided_velocity
from full.cache import TextContext, WanKVCache
from full.cache_choice import new_kv_cache


def frame_levels(sigma: float | Tensor, x: Tensor) -> Tensor:
    """σ as float32 ``[B]`` (a shared or per-sample level) or ``[B, F]`` (per frame) for x ``[B, F, ...]``."""
    s = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
    if s.ndim == 0:
        return s.expand(x.shape[0])
    if s.ndim == 1 and s.shape[0] == x.shape[0]:
        return s
    return sigma_per_frame(s, x).to(torch.float32)


class CausalWanBlockwise:
    """:class:`cf_ref.rollout.BlockwiseModel` of the causal Wan DiT over a :class:`~full.cache.WanKVCache`.

    Block ``j`` of a rollout holds frames ``origin + j·b … origin + (j+1)·b - 1`` (RoPE positions); the
    cache must hold exactly the frames before it (commit blocks in order). ``model`` is a
    :class:`full.model.CausalWanTransformer3DModel` (not imported here: the model imports this module).
    """

    def __init__(self, model: torch.nn.Module, text: TextContext, block_size: int, window: int | None):
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 block or None, got {window}")
        self.model, self.text, self.block_size, self.window = model, text, block_size, window

    def new_cache(self, kind: str = "dynamic", max_frames: int | None = None) -> WanKVCache:
        """An empty cache sized for this model (tokens per frame are fixed by the first block): ``kind``
        ``"dynamic"`` (:class:`~full.cache.WanKVCache`) or ``"static"`` (:class:`~full.static_cache.StaticKVCache`,
        holding ``max_frames`` frames without a window)."""
        return new_kv_cache(kind, len(self.model.blocks), self.block_size, self.window, max_frames=max_frames)

    def _positions(self, x: Tensor, block: int, cache: WanKVCache) -> Tensor:
        self.model._check_latents(x)
        b = self.block_size
        if x.shape[1] != b:
            raise ValueError(f"a block holds {b} frames, got {x.shape[1]}")
        if x.shape[0] != self.text.batch_size:
            raise ValueError(f"latent batch {x.shape[0]} does not match the prompt batch {self.text.batch_size}")
        start = cache.origin + block * b
        if cache.num_frames != start:
            raise ValueError(
                f"block {block} starts at frame {start} but the cache holds {cache.num_frames} committed frames; "
                "commit blocks in order"
            )
        cache.bind(self.model.tokens_per_frame(x.shape[3], x.shape[4]))
        return torch.arange(start, start + b)

    def run_block(
        self, x: Tensor, sigma: Tensor, block: int, cache: WanKVCache, output: bool = True, **run_kwargs
    ) -> Tensor | None:
        """One pass of block ``block`` over the cache (:meth:`CausalWanTransformer3DModel.run` with the block's RoPE
        positions and timesteps): its velocity ``[B, b, C, H, W]`` in x's dtype, or None without ``output``."""
        positions = self._positions(x, block, cache)
        t = timestep_from_sigma(frame_levels(sigma, x))
        frames = slice(None) if output else None
        out = self.model.run(x, t, self.text, positions, cache=cache, output_frames=frames, **run_kwargs)
        return None if out is None else out.to(x.dtype)

    def velocity(self, x: Tensor, sigma: Tensor, block: int, cache: WanKVCache) -> Tensor:
        """Velocity of block ``block``: x ``[B, b, C, H, W]``, sigma ``[B, b]``; reads the cache."""
        return self.run_block(x, sigma, block, cache)

    def commit(self, x: Tensor, sigma: Tensor, block: int, cache: WanKVCache) -> WanKVCache:
        """Cache pass: run the finished block (at level sigma, usually 0) and append its K/V; no grad."""
        with torch.no_grad():
            self.run_block(x, sigma, block, cache, output=False, write=True)
        cache.advance(self.block_size)
        return cache

    def prefill(self, frames: Tensor, cache: WanKVCache, sigma: float = 0.0) -> WanKVCache:
        """Commit given frames ``[B, P, C, H, W]`` (P a multiple of b, e.g. the image latent of I2V) block by
        block, then number rollout blocks from there (:meth:`WanKVCache.rebase`)."""
        if frames.shape[1] % self.block_size:
            raise ValueError(f"{frames.shape[1]} prefill frames is not a multiple of the block size {self.block_size}")
        for j in range(frames.shape[1] // self.block_size):
            block = frames[:, j * self.block_size : (j + 1) * self.block_size]
            self.commit(block, torch.full(block.shape[:2], sigma, device=block.device), j, cache)
        cache.rebase()
        return cache


class GuidedBlockwise:
    r"""CFG over a 2B-batch :class:`CausalWanBlockwise` (first half cond, second half uncond):
    :math:`\hat v = v_\varnothing + w(v_c - v_\varnothing)` via :func:`cf_ref.solvers.guided_velocity`."""

    def __init__(self, inner: CausalWanBlockwise, scale: float):
        self.inner, self.scale = inner, scale

    def new_cache(self, kind: str = "dynamic", max_frames: int | None = None) -> WanKVCache:
        return self.inner.new_cache(kind, max_frames)

    def velocity(self, x: Tensor, sigma: Tensor, block: int, cache: WanKVCache) -> Tensor:
        return guided_velocity(lambda xx, ss: self.inner.velocity(xx, ss, block, cache), x, sigma, self.scale)

    def commit(self, x: Tensor, sigma: Tensor, block: int, cache: WanKVCache) -> WanKVCache:
        return self.inner.commit(torch.cat([x, x]), torch.cat([sigma, sigma]), block, cache)
