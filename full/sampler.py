r"""Few-step causal video generation, block by block with the KV cache, and streaming decode.

For every block of ``b`` latent frames (b = 1 frame-wise, 3 chunk-wise):
:func:`cf_ref.rollout.few_step_rollout` denoises it on the few-step σ list
(:meth:`cf_ref.schedule.FewStepSchedule.uniform`, e.g. t = 1000/750/500/250 warped by the shift 5), re-noising
with fresh noise between steps, then commits it to the KV cache with one more pass at σ = 0 (or at the
``context_noise`` level); the block is decoded to pixels right away by the streaming VAE decoder.

:class:`BlockSampler` is that loop's body, one block per call, with the state a video needs between blocks
(cache, decoder, noise streams, the committed frames the cache still holds). Everything that generates —
:func:`generate` (a whole video), :class:`full.stream.VideoStream` (unbounded, prompt switches), the
diffusers pipeline and the server — drives the same object, so a stream with a fixed prompt and seed yields
exactly :func:`generate`'s frames. Between blocks the conditioning may change (:meth:`BlockSampler.set_text`;
optionally re-caching the held frames under the new prompt, LongLive-style), and so may the step count.

Noise and settings: :mod:`full.sample_config`.

Image-to-video: the image's latent is latent frame 0, clean, at level 0 (:mod:`cf_ref.first_frame`). The frame-wise
model commits it as block 0 (:meth:`BlockSampler.prefill`) and generation starts at frame 1; a chunk-wise model
(Wan2.2-TI2V-5B's way, :meth:`BlockSampler.condition_first_frame`) denoises block 0's other frames around it. Long streams: with a ``window`` the cache rolls (optionally keeping the first block as an attention
sink, :mod:`full.sink`); when the RoPE table (``rope_max_seq_len`` frames) would run out, the held frames are
re-committed at positions from 0 (re-anchoring), so a stream has no length limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from cf_ref.first_frame import FirstFrameConditioned
from cf_ref.rollout import few_step_rollout
from full.attention import apply_rotary
from full.cache import WanKVCache
from full.cache_choice import new_kv_cache
from full.components import WanComponents, load_components  # noqa: F401  (re-exported: the sampler's inputs)
from full.graphs import GraphedBlockwise, compile_blocks
from full.sample_config import Block, NoiseSource, SampleConfig  # noqa: F401  (re-exported)
from full.sink import temporal_rotation
from full.video import StreamingDecoder, video_frames


@dataclass(frozen=True)
class _Committed:
    """A block as it was committed: its frames ``[B, n, C, h, w]`` and level ``[B, n]``, at ``start``."""

    start: int
    x: Tensor
    sigma: Tensor


class _Recording:
    """A :class:`cf_ref.rollout.BlockwiseModel` that tells the sampler what each commit wrote."""

    def __init__(self, inner, on_commit: Callable[[Tensor, Tensor, int], None]):
        self.inner, self.on_commit = inner, on_commit

    def velocity(self, x: Tensor, sigma: Tensor, block: int, cache: WanKVCache) -> Tensor:
        return self.inner.velocity(x, sigma, block, cache)

    def commit(self, x: Tensor, sigma: Tensor, block: int, cache: WanKVCache) -> WanKVCache:
        start = cache.num_frames
        cache = self.inner.commit(x, sigma, block, cache)
        self.on_commit(x, sigma, start)
        return cache


def _synchronizer(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


class BlockSampler:
    """One video generated block by block (see the module doc). Call :meth:`set_text` first, then optionally
    :meth:`prefill`, then :meth:`next_block` as often as wanted; :meth:`close` frees the decoder's cache."""

    def __init__(
        self, components: WanComponents, config: SampleConfig, noise: NoiseSource, batch: int = 1, decode: bool = True
    ):
        config.validate()
        if config.cuda_graphs and components.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, the models are on {components.device}")
        self.components, self.config, self.noise, self.batch = components, config, noise, batch
        if config.compile:
            compile_blocks(components.transformer)
        self.latent_shape = components.latent_shape(config.height, config.width)
        self.device = components.device
        self.steps = config.steps
        self.sync = _synchronizer(self.device)
        self.decoder = StreamingDecoder(components.vae) if decode else None
        self.cache = self._new_cache()
        self.sink: _Committed | None = None
        self.history: list[_Committed] = []  # committed blocks the cache still holds (after the sink)
        self.model: _Recording | None = None
        self.generated = 0  # blocks generated so far
        self.emitted = 0  # blocks emitted (the prefill counts)
        self.frames = 0  # latent frames emitted (absolute; RoPE positions restart when re-anchored)
        self.first_frame: Tensor | None = None  # the image block 0 is conditioned on (chunk-wise image-to-video)

    # ------------------------------------------------------------------ cache bookkeeping
    def _new_cache(self) -> WanKVCache:
        """The configured cache; a static one without a window holds the video's ``num_frames`` frames."""
        cfg = self.config
        layers = len(self.components.transformer.blocks)
        rope = self.components.transformer.rope
        return new_kv_cache(
            cfg.cache,
            layers,
            cfg.block_size,
            cfg.window,
            cfg.sink,
            max_frames=cfg.num_frames,
            sink_positions=cfg.sink_positions,
            rotation=lambda key, delta: apply_rotary(key, *temporal_rotation(rope, delta)),
        )

    def _record(self, x: Tensor, sigma: Tensor, start: int) -> None:
        entry = _Committed(start, x, sigma)
        if self.config.sink and self.sink is None:
            self.sink = entry
            return
        self.history.append(entry)
        capacity = self.cache.capacity_frames
        if capacity is not None:
            end = self.cache.num_frames
            self.history = [e for e in self.history if e.start >= end - capacity]

    def held(self) -> list[_Committed]:
        """The committed blocks whose K/V the cache holds, in order (sink first)."""
        return ([self.sink] if self.sink is not None else []) + self.history

    def _recommit(self, starts: list[int]) -> None:
        """Rebuild the cache from the held blocks under the current prompt, block i at frame ``starts[i]``."""
        entries = self.held()
        self.sink, self.history = None, []
        self.cache.reset()  # same buffers (a static cache's graphs stay valid)
        for entry, start in zip(entries, starts, strict=True):
            self.cache.num_frames = self.cache.origin = start
            self.model.commit(entry.x, entry.sigma, 0, self.cache)
        self.cache.rebase()

    def _reanchor_if_needed(self) -> None:
        b, limit = self.config.block_size, self.components.transformer.rope.max_seq_len
        if self.cache.num_frames + b <= limit:
            return
        if self.cache.capacity_frames is None:
            raise ValueError(
                f"frame {self.cache.num_frames + b} is past the RoPE table ({limit} frames) and the cache keeps the "
                "whole history; set a window (rolling cache) for longer videos"
            )
        starts, n = [], 0
        for entry in self.held():
            starts.append(n)
            n += entry.x.shape[1]
        if n + b > limit:
            raise ValueError(
                f"the rolling cache ({n} frames) plus a block ({b}) needs {n + b} RoPE positions, the model has "
                f"{limit}; use a smaller window"
            )
        self._recommit(starts)

    # ------------------------------------------------------------------ public
    def set_text(self, embeds: Tensor, negative: Tensor | None = None, recache: bool = False) -> float:
        """Condition the next blocks on prompt embeddings ``embeds`` ``[B, L, D_text]`` (and ``negative`` for
        CFG). ``recache`` re-commits the held frames under the new prompt (their self-attention K/V then carry
        it, LongLive's KV re-cache); returns the seconds that took (0 without)."""
        model, cfg = self.components.transformer, self.config
        embeds = embeds.to(self.device)
        if embeds.shape[0] != self.batch:
            raise ValueError(f"prompt batch {embeds.shape[0]} does not match the video batch {self.batch}")
        if cfg.guidance_scale != 1.0:
            if negative is None:
                raise ValueError(f"guidance_scale {cfg.guidance_scale} needs a negative prompt")
            inner = model.guided_blockwise(
                embeds, negative.to(self.device), cfg.guidance_scale, cfg.block_size, cfg.window
            )
            if cfg.cuda_graphs:
                inner.inner = GraphedBlockwise(inner.inner)
        else:
            inner = model.blockwise(embeds, cfg.block_size, cfg.window)
            if cfg.cuda_graphs:
                inner = GraphedBlockwise(inner)
        self.model = _Recording(inner, self._record)
        if not recache or self.cache.num_frames == 0:
            return 0.0
        t0 = time.perf_counter()
        self._recommit([e.start for e in self.held()])
        self.sync()
        return time.perf_counter() - t0

    def restart(self, noise: NoiseSource) -> None:
        """Start a new video with the same prompt, settings and cache buffers (so a static cache's compiled or
        captured passes are reused): an empty cache, ``noise``, a fresh decoder, the configured step count."""
        self.noise, self.steps = noise, self.config.steps
        self.cache.reset()
        self.sink, self.history, self.first_frame = None, [], None
        self.generated = self.emitted = self.frames = 0
        if self.decoder is not None:
            self.decoder.close()
            self.decoder = StreamingDecoder(self.components.vae)

    def set_steps(self, steps: int) -> None:
        """Denoising steps of the following blocks (the first block keeps ``first_block_steps`` if set)."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps = steps

    def _require_model(self) -> _Recording:
        if self.model is None:
            raise RuntimeError("call set_text(...) before generating")
        return self.model

    def _emit(self, x0: Tensor, prefill: bool, timings: dict[str, float]) -> Block:
        video = None
        if self.decoder is not None:
            self.sync()
            t0 = time.perf_counter()
            video = self.decoder.decode_next(x0)
            self.sync()
            timings["decode"] = time.perf_counter() - t0
        block = Block(self.emitted, self.frames, x0, video, prefill, timings)
        self.emitted += 1
        self.frames += x0.shape[1]
        return block

    def prefill(self, image_latent: Tensor) -> Block:
        """Commit the image's latent ``[B, 1, C, h, w]`` as frame 0 (frame-wise model) and emit it decoded."""
        model, (c, h, w) = self._require_model(), self.latent_shape
        if self.config.block_size != 1:
            raise ValueError("image-to-video needs the frame-wise model (block size 1)")
        if self.cache.num_frames or self.generated:
            raise RuntimeError("prefill comes before the first generated block")
        if tuple(image_latent.shape) != (self.batch, 1, c, h, w):
            raise ValueError(f"image latent must be [{self.batch}, 1, {c}, {h}, {w}], got {tuple(image_latent.shape)}")
        x = image_latent.to(device=self.device, dtype=torch.float32)
        t0 = time.perf_counter()
        model.commit(x, torch.zeros(x.shape[:2], device=self.device), 0, self.cache)
        self.cache.rebase()
        self.sync()
        return self._emit(x, True, {"dit": time.perf_counter() - t0})

    def condition_first_frame(self, image_latent: Tensor) -> None:
        """Make the image's latent ``[B, 1, C, h, w]`` frame 0 of the first block, clean at level 0, the other
        frames of that block denoised around it (TI2V; :class:`cf_ref.first_frame.FirstFrameConditioned`)."""
        _, (c, h, w) = self._require_model(), self.latent_shape
        if self.generated or self.cache.num_frames:
            raise RuntimeError("the first frame is conditioned before the first generated block")
        if tuple(image_latent.shape) != (self.batch, 1, c, h, w):
            raise ValueError(f"image latent must be [{self.batch}, 1, {c}, {h}, {w}], got {tuple(image_latent.shape)}")
        self.first_frame = image_latent.to(device=self.device, dtype=torch.float32)

    @torch.no_grad()
    def next_block(self) -> Block:
        """Denoise, commit and decode the next block."""
        model, cfg = self._require_model(), self.config
        if self.generated == 0 and self.first_frame is not None:
            model = FirstFrameConditioned(model, self.first_frame)
        self._reanchor_if_needed()
        steps = cfg.first_block_steps if self.generated == 0 and cfg.first_block_steps else self.steps
        noise = self.noise.block((self.batch, cfg.block_size, *self.latent_shape), self.device)
        t0 = time.perf_counter()
        out = few_step_rollout(
            model,
            noise,
            cfg.block_size,
            cfg.sigmas(steps).to(self.device),
            self.cache,
            context_noise=cfg.context_noise,
            generator=self.noise.renoise,
        )
        self.cache.rebase()
        if isinstance(model, FirstFrameConditioned):
            out.x0[:, :1] = self.first_frame  # exactly the image (the rollout's x − σ(x − c)/σ rounds)
        self.sync()
        timings = {"dit": time.perf_counter() - t0, "steps": float(steps)}
        self.generated += 1
        return self._emit(out.x0, False, timings)

    def close(self) -> None:
        if self.decoder is not None:
            self.decoder.close()


@dataclass
class SampleResult:
    """latents: ``[B, F, C, h, w]`` normalised; video: ``[B, 1+4(F-1), 3, H, W]`` in [-1, 1] (None without
    decoding); timings in seconds: ``first_block`` (first block denoised, committed and — with decoding —
    decoded), ``dit`` (all DiT work), ``decode``, ``total``."""

    latents: Tensor
    video: Tensor | None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        """Video frames per second of wall-clock generation (``total``); the decoded frames when decoded (a VAE's
        temporal factor may not be Wan's 4)."""
        frames = video_frames(self.latents.shape[1]) if self.video is None else self.video.shape[1]
        return frames / self.timings["total"]


@torch.no_grad()
def generate(
    components: WanComponents,
    text_embeds: Tensor,
    config: SampleConfig,
    image_latent: Tensor | None = None,
    decode: bool = True,
    progress: bool = False,
    negative_embeds: Tensor | None = None,
    noise: NoiseSource | None = None,
) -> SampleResult:
    """Generate ``config.num_frames`` latent frames for prompts ``text_embeds`` ``[B, L, D_text]`` (and decode).

    image_latent: ``[B, 1, C, h, w]`` normalised latent of the first frame (image-to-video: prefilled with
    ``block_size`` 1, else frame 0 of the first block). noise: default :meth:`NoiseSource.from_seed` of
    ``config.seed``.
    """
    from tqdm.auto import tqdm

    config.validate()
    noise = noise or NoiseSource.from_seed(config.seed, components.device)
    sampler = BlockSampler(components, config, noise, text_embeds.shape[0], decode)
    sampler.sync()
    start = time.perf_counter()
    sampler.set_text(text_embeds, negative_embeds)
    prefill = image_latent is not None and config.block_size == 1
    blocks = [sampler.prefill(image_latent)] if prefill else []
    if image_latent is not None and not prefill:
        sampler.condition_first_frame(image_latent)
    count = (config.num_frames - (1 if prefill else 0)) // config.block_size
    timings = {}
    for j in tqdm(range(count), desc="blocks", disable=not progress):
        blocks.append(sampler.next_block())
        if j == 0:
            timings["first_block"] = time.perf_counter() - start
    sampler.close()
    timings["total"] = time.perf_counter() - start
    timings["dit"] = sum(b.timings["dit"] for b in blocks)
    timings["decode"] = sum(b.timings.get("decode", 0.0) for b in blocks)
    video = torch.cat([b.video for b in blocks], dim=1) if decode else None
    return SampleResult(torch.cat([b.latents for b in blocks], dim=1), video, timings)
