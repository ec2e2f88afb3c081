r"""Interactive streaming: iterate a video block by block while steering it.

:class:`VideoStream` drives a :class:`full.sampler.BlockSampler` one block per ``next()``: each item is a
:class:`StreamBlock` holding that block's latents and decoded frames as soon as they exist (the VAE decodes
block by block). Between blocks the stream applies what was asked since the last one:

* :meth:`VideoStream.set_prompt` — the next block is conditioned on the new prompt (new cross-attention K/V).
  The cache still holds the recent frames' self-attention K/V computed under the old prompt; with
  ``recache=True`` they are recomputed under the new one first (LongLive's KV re-cache: the held frames are
  committed again, at their positions, with the new text). Safe to call from another thread: a switch asked
  while a block is being generated takes effect at the next block boundary, never inside a block.
* :meth:`VideoStream.set_steps` — steps per block from the next block on (1, 2, 4, …).
* :meth:`VideoStream.reset` — start a new video (empty cache, fresh noise from a seed, decoder restarted).

The stream has no length of its own (``max_blocks=None``): with ``config.window`` the cache rolls (optionally
keeping the first block as an attention sink, ``config.sink``) and positions are re-anchored when the RoPE
table runs out, so it runs until stopped. For a fixed prompt and seed its frames are exactly
:func:`full.sampler.generate`'s (tested).

Example::

    components, _ = load_preset("tiny")
    stream = VideoStream(components, "a red ball", SampleConfig(height=64, width=64, block_size=3))
    for block in stream:                      # block.video: [1, m, 3, H, W] in [-1, 1]
        show(block.frames_uint8())
        if block.index == 3:
            stream.set_prompt("a blue cube", recache=True)
        if block.index == 8:
            break
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from full.components import WanComponents
from full.sampler import Block, BlockSampler, NoiseSource, SampleConfig
from full.video import to_uint8


@dataclass
class StreamBlock:
    """A :class:`full.sampler.Block` plus what it was generated under: ``prompt`` and ``prompt_index`` (0 for
    the stream's first prompt, +1 per switch), ``video_index`` (+1 per reset) and ``steps``; ``timings`` adds
    ``encode`` and ``recache`` seconds spent at this block's boundary."""

    block: Block
    prompt: str
    prompt_index: int
    video_index: int
    steps: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def index(self) -> int:
        return self.block.index

    @property
    def latents(self) -> torch.Tensor:
        return self.block.latents

    @property
    def video(self) -> torch.Tensor | None:
        return self.block.video

    def frames_uint8(self, sample: int = 0) -> np.ndarray:
        """Decoded frames of one sample as ``uint8`` ``[m, H, W, 3]``."""
        if self.block.video is None:
            raise ValueError("this stream does not decode (decode=False)")
        return to_uint8(self.block.video[sample])


@dataclass
class _Pending:
    prompt: str | None = None
    recache: bool = False
    steps: int | None = None
    reset_seed: int | None = None
    reset: bool = False


class VideoStream:
    """An iterator of :class:`StreamBlock` (see the module doc). One video at a time, batch 1."""

    def __init__(
        self,
        components: WanComponents,
        prompt: str,
        config: SampleConfig,
        *,
        negative_prompt: str | None = None,
        max_blocks: int | None = None,
        recache: bool = False,
        image_latent: torch.Tensor | None = None,
        decode: bool = True,
        generator: torch.Generator | None = None,
    ):
        config.validate()
        _check_prompt(prompt)
        if max_blocks is not None and max_blocks < 0:
            raise ValueError(f"max_blocks must be >= 0 or None, got {max_blocks}")
        components.latent_shape(config.height, config.width)
        self.components, self.config, self.max_blocks = components, config, max_blocks
        self.recache_default, self.decode, self.image_latent = recache, decode, image_latent
        self.negative = None if negative_prompt is None else self._encode(negative_prompt)
        self._lock = threading.Lock()
        self._pending = _Pending()
        self.prompt, self.prompt_index, self.video_index = prompt, 0, 0
        self.emitted, self.steps = 0, config.steps  # blocks over all videos; steps per block (after the first)
        self._start_video(generator or torch.Generator().manual_seed(config.seed), prompt)

    # ------------------------------------------------------------------ control (any thread)
    def set_prompt(self, prompt: str, recache: bool | None = None) -> None:
        """Condition the blocks after the current one on ``prompt`` (``recache``: default from the stream)."""
        _check_prompt(prompt)
        with self._lock:
            self._pending.prompt = prompt
            self._pending.recache = self.recache_default if recache is None else recache

    def set_steps(self, steps: int) -> None:
        """Steps per block from the next block on."""
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        with self._lock:
            self._pending.steps = steps

    def reset(self, seed: int | None = None) -> None:
        """Start a new video at the next block: empty cache, noise from ``seed`` (default: the config's)."""
        with self._lock:
            self._pending.reset, self._pending.reset_seed = True, seed

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> VideoStream:
        return self

    def __next__(self) -> StreamBlock:
        if self.max_blocks is not None and self.emitted >= self.max_blocks:
            raise StopIteration
        timings = self._apply_pending()
        if self.image_latent is not None and self.sampler.emitted == 0 and self.sampler.config.block_size == 1:
            block = self.sampler.prefill(self.image_latent)
        else:
            if self.image_latent is not None and self.sampler.emitted == 0:
                self.sampler.condition_first_frame(self.image_latent)  # chunk-wise: frame 0 of the first block
            block = self.sampler.next_block()
        self.emitted += 1
        steps = int(block.timings.get("steps", 0))
        return StreamBlock(block, self.prompt, self.prompt_index, self.video_index, steps, timings | block.timings)

    def close(self) -> None:
        self.sampler.close()

    # ------------------------------------------------------------------ internals
    def _encode(self, prompt: str) -> torch.Tensor:
        return self.components.text.encode([prompt]).to(self.components.transformer.compute_dtype)

    def _start_video(self, generator: torch.Generator, prompt: str) -> float:
        t0 = time.perf_counter()
        self.sampler = BlockSampler(self.components, self.config, NoiseSource(generator, self.components.device))
        self.sampler.set_steps(self.steps)
        self.sampler.set_text(self._encode(prompt), self.negative)
        return time.perf_counter() - t0

    def _apply_pending(self) -> dict[str, float]:
        """Apply what was asked since the last block (the block boundary); returns the seconds it took."""
        with self._lock:
            pending, self._pending = self._pending, _Pending()
        timings: dict[str, float] = {}
        if pending.prompt is not None:
            self.prompt, self.prompt_index = pending.prompt, self.prompt_index + 1
        if pending.reset:
            self.sampler.close()
            seed = self.config.seed if pending.reset_seed is None else pending.reset_seed
            self.video_index += 1
            timings["encode"] = self._start_video(torch.Generator().manual_seed(seed), self.prompt)
        elif pending.prompt is not None:
            t0 = time.perf_counter()
            embeds = self._encode(pending.prompt)
            timings["encode"] = time.perf_counter() - t0
            timings["recache"] = self.sampler.set_text(embeds, self.negative, recache=pending.recache)
        if pending.steps is not None:
            self.steps = pending.steps
            self.sampler.set_steps(pending.steps)
        return timings


def _check_prompt(prompt: object) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"a prompt must be a non-empty string, got {prompt!r}")
