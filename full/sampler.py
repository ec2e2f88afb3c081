r"""Few-step causal video generation, block by block with the KV cache, and streaming decode.

For every block of ``b`` latent frames (b = 1 frame-wise, 3 chunk-wise):
:func:`cf_ref.rollout.few_step_rollout` denoises it on the few-step σ list
(:meth:`cf_ref.schedule.FewStepSchedule.uniform`, e.g. t = 1000/750/500/250 warped by the shift 5), re-noising
with fresh noise between steps, then commits it to the KV cache with one more pass at σ = 0 (or at the
``context_noise`` level); the block is decoded to pixels right away by the streaming VAE decoder. The
rollout is called once per block (the cache is rebased in between), which is what lets the first block
use its own step count (Causal Forcing++ 1-/2-step models denoise the first block with 4 steps) and the
decoder start before the video is finished.

Image-to-video (frame-wise model): the image's latent is committed as frame 0 and generation starts at
frame 1.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from cf_ref.rollout import few_step_rollout
from cf_ref.schedule import DEFAULT_SHIFT, FewStepSchedule
from full.model import CausalWanTransformer3DModel
from full.text import TextEncoder, load_text_encoder
from full.video import StreamingDecoder, load_vae, video_frames


@dataclass(frozen=True)
class SampleConfig:
    """Sampling settings (defaults: the published chunk-wise 4-step setting at 480×832, 81 video frames)."""

    steps: int = 4
    first_block_steps: int | None = None  # e.g. 4 for the Causal Forcing++ 1-/2-step models
    block_size: int = 3
    num_frames: int = 21  # latent frames (81 video frames)
    height: int = 480  # pixels
    width: int = 832
    shift: float = DEFAULT_SHIFT
    context_noise: float = 0.0  # σ of the cache pass (0 = clean)
    window: int | None = None  # rolling KV cache, in blocks (None = whole history)
    seed: int = 0

    def validate(self) -> None:
        if self.steps < 1 or (self.first_block_steps is not None and self.first_block_steps < 1):
            raise ValueError(f"steps must be >= 1, got {self.steps} / first block {self.first_block_steps}")
        if self.block_size < 1 or self.num_frames < 1:
            raise ValueError(f"block size and frames must be >= 1, got {self.block_size}, {self.num_frames}")
        if self.num_frames % self.block_size:
            raise ValueError(
                f"block size {self.block_size} does not divide the number of latent frames {self.num_frames}; "
                f"use a multiple of {self.block_size} (21 latent frames = 81 video frames)"
            )
        if not 0.0 <= self.context_noise < 1.0:
            raise ValueError(f"context_noise must be in [0, 1), got {self.context_noise}")

    def sigmas(self, steps: int | None = None) -> Tensor:
        """The few-step σ list (float64) for ``steps`` (default ``self.steps``): the uniform K-step schedule."""
        return FewStepSchedule.uniform(steps or self.steps, self.shift).student_sigmas()


@dataclass
class WanComponents:
    """The three models of the sampler, on one device."""

    transformer: CausalWanTransformer3DModel
    vae: object
    text: TextEncoder

    @property
    def device(self) -> torch.device:
        return self.transformer.device

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """Latent ``(C, h, w)`` of a ``height×width`` video; the size must suit the VAE and the patch size."""
        factor = self.vae.config.scale_factor_spatial
        _, ph, pw = self.transformer.config.patch_size
        if height % (factor * ph) or width % (factor * pw):
            raise ValueError(
                f"video size {width}x{height} must be a multiple of {factor * pw}x{factor * ph} "
                f"(VAE {factor}x times patch {pw}x{ph})"
            )
        return self.transformer.config.in_channels, height // factor, width // factor


def load_components(
    model_dir: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_key: str | None = "generator",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    text_length: int | None = None,
) -> WanComponents:
    """Load a diffusers-format Wan2.1 folder (``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``)
    offline; ``checkpoint`` replaces the DiT weights (any layout :mod:`full.convert` reads)."""
    from full.convert import load_state_dict, to_diffusers_layout

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model folder {model_dir} does not exist")
    if not (model_dir / "transformer").is_dir():
        raise FileNotFoundError(f"{model_dir} has no transformer/ folder (expected a diffusers-format Wan2.1 folder)")
    transformer = CausalWanTransformer3DModel.from_pretrained(
        model_dir / "transformer", local_files_only=True, torch_dtype=dtype
    )
    if checkpoint is not None:
        state = to_diffusers_layout(load_state_dict(checkpoint, checkpoint_key))
        try:
            missing, unexpected = transformer.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise ValueError(f"checkpoint {checkpoint} does not fit the model in {model_dir}: {exc}") from exc
        if missing or unexpected:
            raise ValueError(
                f"checkpoint {checkpoint} does not fit the model in {model_dir}: "
                f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
            )
    transformer = transformer.to(device).eval()
    vae = load_vae(model_dir, device, dtype)
    if vae.config.z_dim != transformer.config.in_channels:
        raise ValueError(
            f"VAE latents have {vae.config.z_dim} channels, the DiT expects {transformer.config.in_channels}"
        )
    text = load_text_encoder(model_dir, device, dtype, text_length)
    if text.model.config.d_model != transformer.config.text_dim:
        raise ValueError(
            f"text encoder width {text.model.config.d_model} != DiT text_dim {transformer.config.text_dim}"
        )
    return WanComponents(transformer, vae, text)


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
        """Video frames per second of wall-clock generation (``total``)."""
        return video_frames(self.latents.shape[1]) / self.timings["total"]


def _synchronizer(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


@torch.no_grad()
def generate(
    components: WanComponents,
    text_embeds: Tensor,
    config: SampleConfig,
    image_latent: Tensor | None = None,
    decode: bool = True,
    progress: bool = False,
) -> SampleResult:
    """Generate ``config.num_frames`` latent frames for prompts ``text_embeds`` ``[B, L, D_text]`` (and decode).

    image_latent: ``[B, 1, C, h, w]`` normalised latent of the first frame (image-to-video, ``block_size`` 1).
    Noise is drawn on the CPU from ``config.seed`` (same video on any device), the re-noising inside the
    rollout from a generator on the model's device.
    """
    from tqdm.auto import tqdm

    config.validate()
    model, device = components.transformer, components.device
    b, frames = config.block_size, config.num_frames
    c, h, w = components.latent_shape(config.height, config.width)
    batch = text_embeds.shape[0]
    if image_latent is not None:
        if b != 1:
            raise ValueError("image-to-video needs the frame-wise model (block size 1)")
        if image_latent.shape != (batch, 1, c, h, w):
            raise ValueError(f"image latent must be [{batch}, 1, {c}, {h}, {w}], got {tuple(image_latent.shape)}")
    sync = _synchronizer(device)
    cpu = torch.Generator().manual_seed(config.seed)
    noise = torch.randn(batch, frames, c, h, w, generator=cpu).to(device)
    renoise = torch.Generator(device=device).manual_seed(config.seed + 1)
    sigmas = config.sigmas().to(device)
    first_sigmas = config.sigmas(config.first_block_steps).to(device)

    sync()
    start = time.perf_counter()
    bw = model.blockwise(text_embeds.to(device), b, config.window)
    cache = bw.new_cache()
    decoder = StreamingDecoder(components.vae) if decode else None
    latents, videos, timings = [], [], {"dit": 0.0, "decode": 0.0}

    def emit(x0: Tensor) -> None:
        latents.append(x0)
        if decoder is not None:
            sync()
            t0 = time.perf_counter()
            videos.append(decoder.decode_next(x0))
            sync()
            timings["decode"] += time.perf_counter() - t0

    first = 0
    if image_latent is not None:
        t0 = time.perf_counter()
        bw.prefill(image_latent.to(device=device, dtype=noise.dtype), cache)
        sync()
        timings["dit"] += time.perf_counter() - t0
        emit(image_latent.to(device=device, dtype=noise.dtype))
        first = 1
    for j, f0 in enumerate(tqdm(range(first, frames, b), desc="blocks", disable=not progress)):
        t0 = time.perf_counter()
        out = few_step_rollout(
            bw,
            noise[:, f0 : f0 + b],
            b,
            first_sigmas if j == 0 else sigmas,
            cache,
            context_noise=config.context_noise,
            generator=renoise,
        )
        cache.rebase()
        sync()
        timings["dit"] += time.perf_counter() - t0
        emit(out.x0)
        if j == 0:
            timings["first_block"] = time.perf_counter() - start
    if decoder is not None:
        decoder.close()
    timings["total"] = time.perf_counter() - start
    video = torch.cat(videos, dim=1) if decoder is not None else None
    return SampleResult(torch.cat(latents, dim=1), video, timings)
