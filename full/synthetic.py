r"""The synthetic moving-shapes set of the full track (tests, the tiny preset, ``prepare --synthetic``).

A video shows one shape (square or disk) of one colour moving in a straight line with constant speed on a
torus; the caption names shape, colour and direction, the start position is random. So frame ``f`` is frame 0
translated by ``f·velocity`` — a known causal structure a model can learn. Rendered as latents ``[F, C, H, W]``
(colour = a fixed C-vector) for the tiny preset, and as RGB frames ``[T, H, W, 3]`` uint8 for the ``prepare``
path. Captions embed deterministically into ``[L, D]`` text tokens (one fixed random vector per word, zero
padding — the layout of Wan's padded UMT5 embeddings).
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cf_ref.seeding import generator
from full.data import SetKind, ShardWriter

SHAPES = ("square", "disk")
COLOURS = ("red", "green", "blue", "yellow")
RGB = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 80, 230), "yellow": (230, 210, 40)}
DIRECTIONS = {"right": (0.0, 1.0), "left": (0.0, -1.0), "down": (1.0, 0.0), "up": (-1.0, 0.0)}


@dataclass(frozen=True)
class ShapeVideo:
    """One synthetic video: a shape moving by ``speed`` (in units of the frame size) per frame."""

    shape: str
    colour: str
    direction: str
    start: tuple[float, float]  # (y, x) in [0, 1)
    speed: float
    size: float  # half-width (square) or radius (disk), in units of the frame size

    @property
    def caption(self) -> str:
        return f"a {self.colour} {self.shape} moving {self.direction}"


def sample_shape_videos(count: int, seed: int, speed: float = 0.125, size: float = 0.2) -> list[ShapeVideo]:
    """``count`` random videos (shape, colour, direction, start position), reproducible from ``seed``."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    g = generator("cpu", "synthetic-videos", seed)
    pick = torch.randint(0, 1 << 30, (count, 3), generator=g)
    start = torch.rand(count, 2, generator=g, dtype=torch.float64)
    dirs = list(DIRECTIONS)
    return [
        ShapeVideo(
            shape=SHAPES[int(p[0]) % len(SHAPES)],
            colour=COLOURS[int(p[1]) % len(COLOURS)],
            direction=dirs[int(p[2]) % len(dirs)],
            start=(float(s[0]), float(s[1])),
            speed=speed,
            size=size,
        )
        for p, s in zip(pick, start)
    ]


def shape_masks(video: ShapeVideo, frames: int, height: int, width: int, softness: float = 0.5) -> Tensor:
    """Soft occupancy ``[F, H, W]`` in [0, 1] of the moving shape (torus wrap-around, edges ``softness`` px wide)."""
    dy, dx = DIRECTIONS[video.direction]
    f = torch.arange(frames, dtype=torch.float64)[:, None, None]
    cy = (video.start[0] + f * dy * video.speed) % 1.0
    cx = (video.start[1] + f * dx * video.speed) % 1.0
    ys = ((torch.arange(height, dtype=torch.float64) + 0.5) / height)[None, :, None]
    xs = ((torch.arange(width, dtype=torch.float64) + 0.5) / width)[None, None, :]
    ddy = ((ys - cy + 0.5) % 1.0 - 0.5) * height  # signed torus distance, in pixels
    ddx = ((xs - cx + 0.5) % 1.0 - 0.5) * width
    r = video.size * min(height, width)
    if video.shape == "square":
        dist = torch.maximum(ddy.abs(), ddx.abs()) - r
    else:
        dist = torch.sqrt(ddy**2 + ddx**2) - r
    return torch.sigmoid(-dist / softness).float()


def colour_code(colour: str, channels: int) -> Tensor:
    """A fixed ±1.5-ish latent colour vector ``[C]`` per colour name."""
    g = torch.Generator().manual_seed(zlib.crc32(colour.encode()))
    return 1.5 * torch.sign(torch.randn(channels, generator=g)) + 0.25 * torch.randn(channels, generator=g)


def render_latents(video: ShapeVideo, frames: int, channels: int, height: int, width: int) -> Tensor:
    """Latent video ``[F, C, H, W]``: occupancy × colour code (zero background)."""
    mask = shape_masks(video, frames, height, width)
    return mask[:, None] * colour_code(video.colour, channels)[None, :, None, None]


def render_rgb(video: ShapeVideo, frames: int, height: int, width: int) -> np.ndarray:
    """RGB video ``[T, H, W, 3]`` uint8 on a grey background."""
    mask = shape_masks(video, frames, height, width).numpy()[..., None]
    fg = np.asarray(RGB[video.colour], dtype=np.float32)
    bg = np.full(3, 110.0, dtype=np.float32)
    return np.clip(mask * fg + (1 - mask) * bg, 0, 255).round().astype(np.uint8)


def embed_caption(caption: str, length: int, dim: int) -> Tensor:
    """Deterministic token embeddings ``[L, D]``: word i ↦ a fixed N(0, 1) vector, zero padding after the words."""
    out = torch.zeros(length, dim)
    for i, word in enumerate(caption.lower().split()[:length]):
        g = torch.Generator().manual_seed(zlib.crc32(word.encode()))
        out[i] = torch.randn(dim, generator=g)
    return out


@dataclass(frozen=True)
class SyntheticSpec:
    """Shape of a synthetic latent set."""

    count: int = 64
    frames: int = 4
    channels: int = 4
    height: int = 8
    width: int = 8
    text_length: int = 8
    text_dim: int = 32
    seed: int = 0


def write_synthetic_latents(out: str | Path, spec: SyntheticSpec, shard_size: int = 64, restart: bool = False) -> Path:
    """Write the synthetic moving-shapes set as a ``latents`` set (with the empty caption as negative). Only the
    same ``spec`` resumes an interrupted set (``restart``: another spec's shards are deleted first)."""
    videos = sample_shape_videos(spec.count, spec.seed)
    meta = {"source": "synthetic moving shapes", "seed": spec.seed}
    request = {"source": "synthetic moving shapes", **dataclasses.asdict(spec)}
    writer = ShardWriter(out, SetKind.LATENTS, shard_size, meta=meta, request=request, restart=restart)
    for g, chunk in writer.pending_groups(spec.count):
        latents = torch.stack(
            [render_latents(videos[i], spec.frames, spec.channels, spec.height, spec.width) for i in chunk]
        )
        text = torch.stack([embed_caption(videos[i].caption, spec.text_length, spec.text_dim) for i in chunk])
        writer.write_group(g, {"latents": latents, "text": text}, [videos[i].caption for i in chunk])
    writer.write_negative(embed_caption("", spec.text_length, spec.text_dim))
    return writer.finish(spec.count)
