r"""Latents ↔ pixels with diffusers' ``AutoencoderKLWan``, streaming decode, and MP4 output.

The DiT works on *normalised* latents :math:`z = (z_{vae} - \mu)/s` (per channel, from the VAE config);
``[B, F, C, h, w]`` latent frames decode to ``1 + 4(F-1)`` video frames (Wan's causal VAE: the first latent
frame is one video frame, every later one four).

Streaming: ``AutoencoderKLWan.decode`` already runs its decoder one latent frame at a time, carrying a
feature cache of causal-convolution context from frame to frame. :class:`StreamingDecoder` keeps that
cache across calls, so decoding a video block by block as the blocks are generated gives exactly the
frames of one ``decode`` call over the whole video (tested). It drives the VAE's own per-frame loop
(``clear_cache`` / ``_feat_map`` / ``_conv_idx``, the attributes ``decode`` uses).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from cf_ref.errors import InvalidValue
from cf_ref.io import atomic_path

WAN_FPS = 16


def load_vae(folder: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """``folder/vae`` of a diffusers-format Wan folder, offline."""
    from diffusers import AutoencoderKLWan

    from full.model_files import ModelFolderError, check_vae, load_pretrained

    path = Path(folder) / "vae"
    if not path.is_dir():
        raise ModelFolderError(f"{folder} has no vae/ folder (expected a diffusers-format Wan2.1 folder)")
    check_vae(path, "VAE")
    return load_pretrained(AutoencoderKLWan, path, "VAE", torch_dtype=dtype).to(device).eval()


def _stats(vae, like: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std, shaped ``[1, 1, C, 1, 1]`` for ``[B, F, C, h, w]`` latents."""
    mean = torch.tensor(vae.config.latents_mean, device=like.device, dtype=torch.float32)
    std = torch.tensor(vae.config.latents_std, device=like.device, dtype=torch.float32)
    return mean.view(1, 1, -1, 1, 1), std.view(1, 1, -1, 1, 1)


def normalize_latents(vae, z: Tensor) -> Tensor:
    """VAE latents ``[B, F, C, h, w]`` → the DiT's normalised latents (float32)."""
    mean, std = _stats(vae, z)
    return (z.float() - mean) / std


def denormalize_latents(vae, z: Tensor) -> Tensor:
    """Inverse of :func:`normalize_latents`."""
    mean, std = _stats(vae, z)
    return z.float() * std + mean


def video_frames(num_latent_frames: int, temporal_factor: int = 4) -> int:
    """Video frames decoded from ``F`` latent frames: ``1 + 4(F-1)``."""
    return 1 + temporal_factor * (num_latent_frames - 1)


@torch.no_grad()
def encode_image(vae, image: Tensor) -> Tensor:
    """An image ``[B, 3, H, W]`` in [-1, 1] → its normalised latent frame ``[B, 1, C, h, w]`` (the mode)."""
    x = rearrange(image, "b c h w -> b c 1 h w").to(device=vae.device, dtype=vae.dtype)
    z = vae.encode(x).latent_dist.mode()
    return normalize_latents(vae, rearrange(z, "b c f h w -> b f c h w"))


class StreamingDecoder:
    """Decode normalised latents block by block; the concatenated outputs equal one full decode."""

    def __init__(self, vae):
        if vae.use_tiling:
            raise ValueError("streaming decode needs an untiled VAE (disable_tiling())")
        self.vae = vae
        self.frames_seen = 0
        vae.clear_cache()

    @torch.no_grad()
    def decode_next(self, latents: Tensor) -> Tensor:
        """Next latent frames ``[B, n, C, h, w]`` (normalised) → video frames ``[B, m, 3, H, W]`` in [-1, 1]."""
        from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

        vae = self.vae
        z = rearrange(denormalize_latents(vae, latents), "b f c h w -> b c f h w").to(vae.dtype)
        x = vae.post_quant_conv(z)  # a 1×1×1 convolution: frame by frame is exact
        outs = []
        for i in range(x.shape[2]):
            vae._conv_idx = [0]
            outs.append(
                vae.decoder(
                    x[:, :, i : i + 1],
                    feat_cache=vae._feat_map,
                    feat_idx=vae._conv_idx,
                    first_chunk=self.frames_seen == 0,
                )
            )
            self.frames_seen += 1
        out = torch.cat(outs, dim=2)
        if vae.config.patch_size is not None:
            out = unpatchify(out, patch_size=vae.config.patch_size)
        return rearrange(out.clamp(-1.0, 1.0), "b c f h w -> b f c h w")

    def close(self) -> None:
        """Free the feature cache."""
        self.vae.clear_cache()


@torch.no_grad()
def decode_latents(vae, latents: Tensor) -> Tensor:
    """Normalised latents ``[B, F, C, h, w]`` → video ``[B, 1+4(F-1), 3, H, W]`` in [-1, 1] (one ``decode`` call)."""
    z = rearrange(denormalize_latents(vae, latents), "b f c h w -> b c f h w").to(vae.dtype)
    return rearrange(vae.decode(z).sample, "b c f h w -> b f c h w")


def to_uint8(video: Tensor) -> np.ndarray:
    """Video ``[F, 3, H, W]`` in [-1, 1] → ``uint8`` ``[F, H, W, 3]``."""
    x = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return rearrange(x, "f c h w -> f h w c").cpu().numpy()


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int = WAN_FPS) -> Path:
    """Write ``uint8`` frames ``[F, H, W, 3]`` as an H.264 MP4 (ffmpeg via imageio), atomically
    (:func:`cf_ref.io.atomic_path`: a temporary ``….tmp.mp4`` beside ``path``, then renamed)."""
    import imageio.v2 as imageio

    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [F, H, W, 3], got {frames.dtype} {frames.shape}")
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = imageio.get_writer(
            tmp, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=1, pixelformat="yuv420p"
        )
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()
    return path


def read_mp4(path: str | os.PathLike) -> np.ndarray:
    """Decode an MP4 into ``uint8`` ``[F, H, W, 3]`` (used to check written files)."""
    import imageio.v2 as imageio

    reader = imageio.get_reader(str(path), format="FFMPEG")
    try:
        return np.stack([np.asarray(f) for f in reader])
    finally:
        reader.close()


def load_image(path: str | os.PathLike, height: int, width: int) -> Tensor:
    """An RGB image file → ``[1, 3, H, W]`` in [-1, 1]; it must already be ``width×height`` pixels."""
    import imageio.v2 as imageio

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image at {path}")
    img = np.asarray(imageio.imread(path))
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    img = img[..., :3]
    if img.shape[:2] != (height, width):
        raise InvalidValue(
            f"image {path} is {img.shape[1]}x{img.shape[0]} pixels; the video is {width}x{height}: resize or crop it first"
        )
    x = torch.from_numpy(img.copy()).float() / 127.5 - 1.0
    return rearrange(x, "h w c -> 1 c h w")
