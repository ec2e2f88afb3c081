r"""``cf-ref full prepare``: turn videos / latents / prompts into the sharded sets the stages read.

* videos: ``DIR/name.mp4`` + ``DIR/name.txt`` (caption) → VAE latents with diffusers' ``AutoencoderKLWan``,
  normalised as Wan does, :math:`z = (\mu - m)/s` with the VAE config's ``latents_mean`` m and
  ``latents_std`` s (:func:`full.video.normalize_latents`), stored ``[F, C, H, W]``; captions → UMT5
  embeddings ``[L, D]`` (:class:`full.text.TextEncoder`: zero past each caption's tokens, as diffusers'
  ``WanPipeline``);
* already-encoded latents: ``DIR/name.safetensors`` (key ``latents``, ``[F, C, H, W]``) + ``DIR/name.txt``;
* prompts only (for DMD): a text file, one prompt per line → a ``prompts`` set;
* the synthetic moving-shapes set (latents directly, or as RGB videos to exercise the video path).

All models load from local folders (no network): the ``vae``, ``text_encoder`` and ``tokenizer``
subfolders of a diffusers Wan pipeline folder, or each folder given explicitly. Every set also gets the
negative prompt's embedding (Wan's default negative prompt unless given).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from cf_ref.checksums import file_digest
from cf_ref.io import read_text
from full.data import DataError, SetKind, ShardWriter, claim_request, read_prompts
from full.model_files import check_safetensors, check_vae, load_pretrained, read_config, weight_files
from full.synthetic import render_rgb, sample_shape_videos
from full.text import WAN_TEXT_LENGTH, TextEncoder
from full.video import normalize_latents

WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
    "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，"
    "杂乱的背景，三条腿，背景人很多，倒着走"
)
"""Wan2.1's default negative prompt (its ``sample_neg_prompt``), used by the published configs for CFG."""

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv")


def _component(root: str | Path | None, explicit: str | Path | None, name: str) -> Path:
    path = Path(explicit) if explicit is not None else (Path(root) / name if root is not None else None)
    if path is None:
        raise DataError(
            f"no {name} folder: pass --{name.replace('_', '-')} DIR or a Wan pipeline folder with --wan DIR"
        )
    if not path.is_dir():
        raise DataError(f"{name} folder {path} does not exist")
    return path


def load_text_encoder(
    root: str | Path | None = None,
    text_encoder: str | Path | None = None,
    tokenizer: str | Path | None = None,
    max_length: int = WAN_TEXT_LENGTH,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> TextEncoder:
    """:class:`full.text.TextEncoder` (UMT5 + tokenizer) from local folders (``root/text_encoder``,
    ``root/tokenizer`` unless given one by one)."""
    from transformers import AutoTokenizer, UMT5EncoderModel

    enc_path = _component(root, text_encoder, "text_encoder")
    tok_path = _component(root, tokenizer, "tokenizer")
    read_config(enc_path, "text encoder")
    for f in weight_files(enc_path, "text encoder"):
        check_safetensors(f)
    model = load_pretrained(UMT5EncoderModel, enc_path, "text encoder", dtype=dtype).to(device).eval()
    tok = load_pretrained(AutoTokenizer, tok_path, "tokenizer")
    return TextEncoder(tokenizer=tok, model=model, max_length=max_length)


def embed(text: TextEncoder, prompts: Sequence[str], dtype: torch.dtype = torch.float32) -> Tensor:
    """Prompt embeddings ``[B, L, D]`` on the CPU, zero past each prompt's tokens (:meth:`TextEncoder.encode`)."""
    return text.encode(list(prompts)).to("cpu", dtype)


def load_vae(root: str | Path | None = None, vae: str | Path | None = None, device: str | torch.device = "cpu"):
    """diffusers ``AutoencoderKLWan`` from a local folder (fp32: the encoder's statistics are precision-sensitive)."""
    from diffusers import AutoencoderKLWan

    path = _component(root, vae, "vae")
    check_vae(path, "VAE")
    return load_pretrained(AutoencoderKLWan, path, "VAE").to(device).eval()


def read_video(path: str | Path, frames: int, height: int, width: int) -> Tensor:
    """The first ``frames`` frames of a video file, centre-cropped to the aspect and resized: ``[T, H, W, 3]`` uint8."""
    import imageio.v3 as iio

    try:
        video = np.asarray(iio.imread(path, plugin="pyav"))
    except Exception as exc:
        raise DataError(f"cannot read video {path}: {exc}") from exc
    if video.ndim != 4 or video.shape[-1] != 3:
        raise DataError(f"video {path}: expected RGB frames [T, H, W, 3], got shape {video.shape}")
    if video.shape[0] < frames:
        raise DataError(f"video {path} has {video.shape[0]} frames, need at least {frames}")
    x = torch.from_numpy(video[:frames]).permute(0, 3, 1, 2).float()  # [T, 3, h, w]
    h, w = x.shape[-2:]
    scale = max(height / h, width / w)
    x = torch.nn.functional.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True)
    top, left = (x.shape[-2] - height) // 2, (x.shape[-1] - width) // 2
    x = x[..., top : top + height, left : left + width]
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


@torch.no_grad()
def encode_video(frames: Tensor, vae) -> Tensor:
    """RGB ``[T, H, W, 3]`` uint8 (T = 1 + 4k) → normalised latents ``[F, C, H/8, W/8]`` with F = 1 + k
    (the posterior mean, normalised by :func:`full.video.normalize_latents`)."""
    device = next(vae.parameters()).device
    x = frames.permute(3, 0, 1, 2)[None].to(device=device, dtype=torch.float32) / 127.5 - 1.0  # [1, 3, T, H, W]
    mu = vae.encode(x).latent_dist.mean  # [1, C, F, h, w]
    return normalize_latents(vae, rearrange(mu, "b c f h w -> b f c h w"))[0].cpu()


def _captioned(folder: Path, suffixes: Sequence[str]) -> list[tuple[Path, str]]:
    if not folder.is_dir():
        raise DataError(f"input folder {folder} does not exist")
    items = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)
    if not items:
        raise DataError(f"{folder} holds no {'/'.join(suffixes)} files")
    missing = [p.name for p in items if not p.with_suffix(".txt").is_file()]
    if missing:
        raise DataError(f"{len(missing)} item(s) in {folder} have no caption file NAME.txt, e.g. {missing[:3]}")
    return [(p, read_text(p.with_suffix(".txt"), "caption file").strip()) for p in items]


def prepare_videos(
    videos: str | Path,
    out: str | Path,
    vae,
    text: TextEncoder,
    frames: int,
    height: int,
    width: int,
    shard_size: int = 64,
    negative_prompt: str = WAN_NEGATIVE_PROMPT,
    rank: int = 0,
    world_size: int = 1,
    restart: bool = False,
) -> Path | None:
    """Encode captioned videos into a ``latents`` set (resumable; process ``rank`` of ``world_size`` does its shards;
    only the same request resumes, see :class:`full.data.ShardWriter`; ``restart`` clears another request's files).

    Returns the set's folder from rank 0 once the index is written, None on other ranks.
    """
    if (frames - 1) % 4:
        raise DataError(f"the Wan VAE needs 1 + 4k video frames (e.g. 81), got {frames}")
    if height % 8 or width % 8:
        raise DataError(f"height and width must be multiples of 8 (the VAE's spatial factor), got {height}×{width}")
    items = _captioned(Path(videos), VIDEO_SUFFIXES)
    meta = {"source": str(videos), "frames": frames}
    request = {**_request(videos, text, negative_prompt), "frames": frames, "height": height, "width": width}
    request["vae"] = _model_name(vae.config.get("_name_or_path"))
    writer = ShardWriter(out, SetKind.LATENTS, shard_size, meta=meta, request=request, restart=restart)
    for g, chunk in writer.pending_groups(len(items), rank, world_size):
        latents = torch.stack([encode_video(read_video(items[i][0], frames, height, width), vae) for i in chunk])
        captions = [items[i][1] for i in chunk]
        writer.write_group(g, {"latents": latents, "text": embed(text, captions)}, captions)
    return _finish(writer, len(items), text, negative_prompt, rank)


def prepare_latents(
    latents: str | Path,
    out: str | Path,
    text: TextEncoder,
    shard_size: int = 64,
    negative_prompt: str = WAN_NEGATIVE_PROMPT,
    restart: bool = False,
) -> Path:
    """Pack already-encoded latents (``name.safetensors`` with key ``latents [F, C, H, W]`` + ``name.txt``)."""
    from cf_ref.io import load_tensors

    items = _captioned(Path(latents), (".safetensors",))
    request = _request(latents, text, negative_prompt)
    writer = ShardWriter(out, SetKind.LATENTS, shard_size, {"source": str(latents)}, request, restart)
    shape = None
    for g, chunk in writer.pending_groups(len(items)):
        rows = []
        for i in chunk:
            tensors = load_tensors(items[i][0])
            if "latents" not in tensors or tensors["latents"].ndim != 4:
                raise DataError(f"{items[i][0]} must hold a 'latents' tensor [F, C, H, W]")
            if shape is not None and tensors["latents"].shape != shape:
                raise DataError(f"{items[i][0]}: latents {tuple(tensors['latents'].shape)} differ from {tuple(shape)}")
            shape = tensors["latents"].shape
            rows.append(tensors["latents"].float())
        captions = [items[i][1] for i in chunk]
        writer.write_group(g, {"latents": torch.stack(rows), "text": embed(text, captions)}, captions)
    result = _finish(writer, len(items), text, negative_prompt, 0)
    assert result is not None
    return result


def prepare_prompts(
    prompts: str | Path,
    out: str | Path,
    text: TextEncoder,
    shard_size: int = 256,
    negative_prompt: str = WAN_NEGATIVE_PROMPT,
    restart: bool = False,
) -> Path:
    """Encode a prompt file (one per line) into a ``prompts`` set for DMD."""
    lines = read_prompts(prompts)
    request = {**_request(prompts, text, negative_prompt), "prompts_sha256": file_digest(prompts)}
    writer = ShardWriter(out, SetKind.PROMPTS, shard_size, {"source": str(prompts)}, request, restart)
    for g, chunk in writer.pending_groups(len(lines)):
        captions = [lines[i] for i in chunk]
        writer.write_group(g, {"text": embed(text, captions)}, captions)
    result = _finish(writer, len(lines), text, negative_prompt, 0)
    assert result is not None
    return result


def _model_name(name: object) -> str | None:
    return os.path.abspath(name) if isinstance(name, str) and name else None


def _request(source: str | Path, text: TextEncoder, negative_prompt: str) -> dict:
    """What a prepared set depends on besides its sizes: the input, the text encoder, the negative prompt."""
    return {
        "source": os.path.abspath(source),
        "text_encoder": _model_name(getattr(text.model.config, "_name_or_path", None)),
        "text_length": text.max_length,
        "negative_prompt": negative_prompt,
    }


def _finish(writer: ShardWriter, count: int, text: TextEncoder, negative_prompt: str, rank: int) -> Path | None:
    if rank != 0:
        return None
    writer.write_negative(embed(text, [negative_prompt])[0])
    return writer.finish(count)


def write_synthetic_videos(
    out: str | Path, count: int, frames: int, height: int, width: int, seed: int = 0, fps: int = 8, restart=False
) -> Path:
    """Write ``count`` synthetic moving-shape videos as ``video-NNNN.mp4`` + ``.txt`` captions (the prepare path's
    input). A folder holding another request's videos is refused (``restart``: they are deleted first)."""
    import imageio.v3 as iio

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    request = {"kind": "synthetic-videos", "count": count, "frames": frames, "height": height, "width": width}
    request |= {"seed": seed, "fps": fps}
    claim_request(out, request, sorted(out.glob("video-*.*")), restart)
    for i, video in enumerate(sample_shape_videos(count, seed)):
        rgb = render_rgb(video, frames, height, width)
        iio.imwrite(out / f"video-{i:04d}.mp4", rgb, plugin="pyav", codec="libx264", fps=fps)
        (out / f"video-{i:04d}.txt").write_text(video.caption + "\n", encoding="utf-8")
    return out
