r"""The synthetic moving-shapes set of the full track (tests, the tiny preset, ``prepare --synthetic``, the small
track of :mod:`full.small`).

A video shows one shape (square or disk) of one colour moving in a straight line with constant speed; the
caption names shape, colour and direction, the start position is random. Two motions:

* ``torus`` (the tiny preset): the frame wraps around, so frame ``f`` is frame 0 translated by ``f·velocity``;
* ``bounce`` (the small track): the shape stays inside the frame and reflects off the walls. Per axis, with the
  centre confined to ``[lo, hi] = [size, 1 - size]`` and ``L = hi - lo``, the centre at frame ``f`` is
  ``lo + fold(p0 - lo + v·f)`` with ``fold(u) = u mod 2L`` if that is ``≤ L``, else ``2L - (u mod 2L)``.

A :class:`Scene` holds one or more such shapes (distinct colours, painted in order); its caption joins theirs
with "and". Both are known causal structures a model can learn. Rendered as latents ``[F, C, H, W]``
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
from einops import rearrange
from torch import Tensor

from cf_ref.seeding import generator
from full.data import SetKind, ShardWriter

SHAPES = ("square", "disk")
COLOURS = ("red", "green", "blue", "yellow")
RGB = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 80, 230), "yellow": (230, 210, 40)}
DIRECTIONS = {"right": (0.0, 1.0), "left": (0.0, -1.0), "down": (1.0, 0.0), "up": (-1.0, 0.0)}
BOUNCE_STARTS = ("anywhere", "behind")


@dataclass(frozen=True)
class ShapeVideo:
    """One synthetic video: a shape moving by ``speed`` (in units of the frame size) per frame."""

    shape: str
    colour: str
    direction: str
    start: tuple[float, float]  # (y, x) in [0, 1)
    speed: float
    size: float  # half-width (square) or radius (disk), in units of the frame size
    motion: str = "torus"  # "torus" (wrap around) or "bounce" (reflect off the walls)

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


def bounce_positions(start: float, velocity: float, lo: float, hi: float, frames: int) -> Tensor:
    """Positions ``[F]`` (float64) of a point moving at ``velocity`` per frame from ``start`` inside ``[lo, hi]``,
    reflected at both ends (module doc: ``lo + fold(start - lo + v·f)``)."""
    span = hi - lo
    if span <= 0:
        raise ValueError(f"need lo < hi, got [{lo}, {hi}]")
    u = (start - lo + velocity * torch.arange(frames, dtype=torch.float64)) % (2 * span)
    return lo + torch.where(u <= span, u, 2 * span - u)


def shape_centres(video: ShapeVideo, frames: int) -> tuple[Tensor, Tensor]:
    """Centres ``(cy [F], cx [F])`` in units of the frame size (float64): wrapped on the torus, or bounced."""
    dy, dx = DIRECTIONS[video.direction]
    f = torch.arange(frames, dtype=torch.float64)
    if video.motion == "torus":
        return (video.start[0] + f * dy * video.speed) % 1.0, (video.start[1] + f * dx * video.speed) % 1.0
    if video.motion != "bounce":
        raise ValueError(f"motion must be 'torus' or 'bounce', got {video.motion!r}")
    lo, hi = video.size, 1.0 - video.size
    return tuple(bounce_positions(s, d * video.speed, lo, hi, frames) for s, d in zip(video.start, (dy, dx)))


def occupancy(shape: str, ddy: Tensor, ddx: Tensor, radius: float, softness: float) -> Tensor:
    """Soft occupancy ``sigmoid(-signed distance / softness)`` of a square (half-width ``radius``) or disk
    (radius ``radius``) at pixel offsets ``ddy``, ``ddx`` from its centre (pixels, broadcastable)."""
    if shape == "square":
        dist = torch.maximum(ddy.abs(), ddx.abs()) - radius
    elif shape == "disk":
        dist = torch.sqrt(ddy**2 + ddx**2) - radius
    else:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    return torch.sigmoid(-dist / softness)


def shape_masks(video: ShapeVideo, frames: int, height: int, width: int, softness: float = 0.5) -> Tensor:
    """Soft occupancy ``[F, H, W]`` in [0, 1] of the moving shape (edges ``softness`` px wide; on the torus the
    distance wraps around)."""
    cy, cx = shape_centres(video, frames)
    ys = ((torch.arange(height, dtype=torch.float64) + 0.5) / height)[None, :, None]
    xs = ((torch.arange(width, dtype=torch.float64) + 0.5) / width)[None, None, :]
    ddy, ddx = ys - cy[:, None, None], xs - cx[:, None, None]
    if video.motion == "torus":
        ddy, ddx = (ddy + 0.5) % 1.0 - 0.5, (ddx + 0.5) % 1.0 - 0.5  # signed torus distance
    r = video.size * min(height, width)
    return occupancy(video.shape, ddy * height, ddx * width, r, softness).float()


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
class Scene:
    """One or more bouncing shapes of distinct colours in one video (painted in order, later ones on top)."""

    objects: tuple[ShapeVideo, ...]

    @property
    def caption(self) -> str:
        return " and ".join(o.caption for o in self.objects)


def _bounce_start(direction: str, speed: float, size: float, u: Tensor, start: str = "anywhere") -> tuple[float, float]:
    """A start ``(y, x)`` inside the walls from uniforms ``u [2]``, on the moving axis at least two frames' travel
    from either wall (so the first frames show the captioned direction: a shape starting at a wall would move
    exactly as one that just bounced there, going the other way). ``start``: ``anywhere`` between those margins, or
    ``behind`` — in the half of that range the shape moves away from (a shape "moving left" starts in the right
    half), so that the captioned direction is the video's main motion, not only its first frames'."""
    if start not in BOUNCE_STARTS:
        raise ValueError(f"start must be one of {BOUNCE_STARTS}, got {start!r}")
    lo, span = size, 1.0 - 2 * size
    out = []
    for d, r in zip(DIRECTIONS[direction], u):
        margin = 2 * speed * abs(d)
        r = float(r)
        if start == "behind" and d != 0:
            r = 0.5 * r if d > 0 else 1.0 - 0.5 * r
        out.append(lo + margin + r * (span - 2 * margin))
    return out[0], out[1]


def sample_bounce_scenes(
    count: int,
    seed: int,
    objects: int = 1,
    speed: tuple[float, float] = (0.04, 0.07),
    size: float = 0.17,
    start: str = "anywhere",
) -> list[Scene]:
    """``count`` random scenes of ``objects`` bouncing shapes (distinct colours; shape, direction, speed ∈ ``speed``
    frame sizes per frame and start inside the walls (:func:`_bounce_start` with ``start``) uniform), reproducible
    from ``seed``."""
    if count < 1 or not 1 <= objects <= len(COLOURS):
        raise ValueError(f"need count >= 1 and 1 <= objects <= {len(COLOURS)}, got {count}, {objects}")
    if not 0 < size < 0.5 or not 0 <= speed[0] <= speed[1] < (1 - 2 * size) / 4:
        raise ValueError(f"need 0 < size < 0.5 and 0 <= speed[0] <= speed[1] < (1 - 2 size) / 4, got {size}, {speed}")
    g = generator("cpu", "bounce-scenes", seed)
    dirs = list(DIRECTIONS)
    scenes = []
    for _ in range(count):
        colours = torch.randperm(len(COLOURS), generator=g)[:objects]
        pick = torch.randint(0, 1 << 30, (objects, 2), generator=g)
        u = torch.rand(objects, 3, generator=g, dtype=torch.float64)
        objs = []
        for c, p, r in zip(colours, pick, u):
            direction, v = dirs[int(p[1]) % len(dirs)], speed[0] + float(r[2]) * (speed[1] - speed[0])
            p0 = _bounce_start(direction, v, size, r[:2], start)
            shape = SHAPES[int(p[0]) % len(SHAPES)]
            objs.append(ShapeVideo(shape, COLOURS[int(c)], direction, p0, v, size, motion="bounce"))
        scenes.append(Scene(tuple(objs)))
    return scenes


BACKGROUND = 0.5  # grey, in [0, 1] per RGB channel
# the walls' colour, a light lilac: as a blend g + α (c - g) of the grey g with any palette colour c it has
# α = (w - g)·(c - g) / |c - g|² ≤ 0.05 < full.small.detect.ALPHA_MIN, so the detector never counts it as a shape
WALL_RGB = (194, 128, 194)
BACKDROPS = ("plain", "walls")


def palette(colour: str) -> Tensor:
    """The RGB value ``[3]`` in [0, 1] of a colour name."""
    return torch.tensor(RGB[colour], dtype=torch.float32) / 255.0


def backdrop_image(backdrop: str, pixels: int) -> Tensor:
    """The still background ``[H, W, 3]`` (``H = W = pixels``) every video is painted on: ``plain`` grey, or
    ``walls`` — grey with the outermost pixel ring in :data:`WALL_RGB`, the walls the shapes bounce off (a shape
    touching a wall covers that ring: its centre stays in ``[size, 1 - size]``). The walls are the same in every
    video, so they give a model with only relative positions (RoPE) something fixed to place the shapes against."""
    if backdrop not in BACKDROPS:
        raise ValueError(f"backdrop must be one of {BACKDROPS}, got {backdrop!r}")
    out = torch.full((pixels, pixels, 3), BACKGROUND)
    if backdrop == "walls":
        ring = torch.ones(pixels, pixels, dtype=torch.bool)
        ring[1:-1, 1:-1] = False
        out[ring] = torch.tensor(WALL_RGB, dtype=torch.float32) / 255.0
    return out


def render_scene(scene: Scene, frames: int, pixels: int, softness: float = 0.35, backdrop: str = "plain") -> Tensor:
    """RGB video ``[F, H, W, 3]`` float in [0, 1] (``H = W = pixels``): each shape alpha-composited, in order,
    over the still background :func:`backdrop_image` (``backdrop``)."""
    out = backdrop_image(backdrop, pixels).expand(frames, -1, -1, -1)
    for obj in scene.objects:
        alpha = shape_masks(obj, frames, pixels, pixels, softness)[..., None]
        out = alpha * palette(obj.colour) + (1 - alpha) * out
    return out


def patch_encode(rgb: Tensor, patch: int) -> Tensor:
    """The fixed patch code: RGB ``[..., F, H, W, 3]`` in [0, 1] → latents ``[..., F, 3·p·p, H/p, W/p]`` with
    value ``2·(rgb - background)`` (background 0, colours within ±1). Exactly inverted by :func:`patch_decode`."""
    return rearrange(2.0 * (rgb - BACKGROUND), "... f (h p1) (w p2) c -> ... f (c p1 p2) h w", p1=patch, p2=patch)


def patch_decode(latents: Tensor, patch: int) -> Tensor:
    """Latents ``[..., F, 3·p·p, h, w]`` → RGB ``[..., F, h·p, w·p, 3]`` in [0, 1] (clamped)."""
    rgb = rearrange(latents, "... f (c p1 p2) h w -> ... f (h p1) (w p2) c", c=3, p1=patch, p2=patch)
    return (rgb / 2.0 + BACKGROUND).clamp(0.0, 1.0)


@dataclass(frozen=True)
class BounceSpec:
    """A set of bouncing-shape scenes (:func:`write_bounce_latents`): ``pixels``² RGB frames in the patch code."""

    count: int = 256
    frames: int = 12
    pixels: int = 16
    patch: int = 2
    objects: int = 1
    speed: tuple[float, float] = (0.04, 0.07)
    size: float = 0.17
    text_length: int = 8
    text_dim: int = 32
    seed: int = 0
    start: str = "anywhere"  # where a shape starts on its moving axis (:func:`_bounce_start`)
    backdrop: str = "plain"  # the still background (:func:`backdrop_image`): plain grey, or the walls drawn

    def __post_init__(self) -> None:
        if self.backdrop not in BACKDROPS:
            raise ValueError(f"backdrop must be one of {BACKDROPS}, got {self.backdrop!r}")

    @property
    def channels(self) -> int:
        return 3 * self.patch**2

    def scenes(self) -> list[Scene]:
        return sample_bounce_scenes(self.count, self.seed, self.objects, self.speed, self.size, self.start)

    def render(self, scene: Scene) -> Tensor:
        """RGB video ``[frames, pixels, pixels, 3]`` of ``scene`` as this data draws it (:func:`render_scene` on
        this spec's backdrop)."""
        return render_scene(scene, self.frames, self.pixels, backdrop=self.backdrop)


def write_bounce_latents(out: str | Path, spec: BounceSpec, shard_size: int = 64, restart: bool = False) -> Path:
    """Write ``spec``'s scenes as a ``latents`` set (patch-coded; the empty caption as negative), resumable like
    :func:`write_synthetic_latents`."""
    scenes = spec.scenes()
    request = {"source": "synthetic bouncing shapes", **dataclasses.asdict(spec)}
    meta = {"source": "synthetic bouncing shapes", "seed": spec.seed}
    writer = ShardWriter(out, SetKind.LATENTS, shard_size, meta=meta, request=request, restart=restart)
    for g, chunk in writer.pending_groups(spec.count):
        rgb = torch.stack([spec.render(scenes[i]) for i in chunk])
        text = torch.stack([embed_caption(scenes[i].caption, spec.text_length, spec.text_dim) for i in chunk])
        writer.write_group(
            g, {"latents": patch_encode(rgb, spec.patch), "text": text}, [scenes[i].caption for i in chunk]
        )
    writer.write_negative(embed_caption("", spec.text_length, spec.text_dim))
    return writer.finish(spec.count)


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
