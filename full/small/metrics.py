r"""Scores of generated videos against the known generative process (:func:`full.synthetic.sample_bounce_scenes`).

Each captioned object is found by colour (:mod:`full.small.detect`). Per object, on its present frames:

* **bounce fit**: per axis, the start ``p0`` and velocity ``v`` of :func:`full.synthetic.bounce_positions` on the
  known walls ``[lo, hi] = [r, P - r]`` (pixels) minimising the squared distance to the detected centres (grid search,
  then a finer grid around the best point); the *physics error* is the RMS residual (px) over both axes;
* **speed**: mean ``|c_{f+1} - c_f|`` over consecutive present frames (px / frame) — the *dynamic degree*;
* **direction**: the fitted velocity's dominant axis and sign (``static`` below ``min_speed``).

Per video: *bad-frame fraction* (missing or duplicated), mean soft IoU, and *instruction following* — every object's
colour present in at least half the frames, its best-matching shape the caption's, its direction the caption's.
A set of videos is summarised by the means; the *energy distance* ``2E|X-Y| - E|X-X'| - E|Y-Y'|`` between per-video
feature vectors (speed, |fitted v|, physics error, IoU, bad-frame fraction; each scaled by the reference set's std)
compares it with data, and the same distance between two independent data sets is its noise floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from full.small.detect import Detection, detect, membership
from full.synthetic import DIRECTIONS, SHAPES, Scene

MIN_SPEED = 0.1  # px / frame below which an object counts as static


def _fold_grid(p0: Tensor, v: Tensor, lo: float, hi: float, frames: Tensor) -> Tensor:
    """Bounce positions for every (p0, v) pair: ``[P0, V, F]``."""
    span = hi - lo
    u = (p0[:, None, None] - lo + v[None, :, None] * frames[None, None, :]) % (2 * span)
    return lo + torch.where(u <= span, u, 2 * span - u)


def fit_bounce(pos: Tensor, frames: Tensor, lo: float, hi: float, vmax: float) -> tuple[float, float, Tensor]:
    """Least-squares bounce fit of positions ``pos [n]`` at frame indices ``frames [n]`` inside ``[lo, hi]``:
    ``(p0, v, residuals [n])`` (grid over ``p0 ∈ [lo, hi]``, ``v ∈ [-vmax, vmax]``, then refined)."""
    p0 = torch.linspace(lo, hi, 81, dtype=torch.float64)
    v = torch.linspace(-vmax, vmax, 161, dtype=torch.float64)
    for _ in range(3):
        err = (_fold_grid(p0, v, lo, hi, frames) - pos).pow(2).sum(-1)
        i, j = divmod(int(err.argmin()), len(v))
        dp, dv = float(p0[1] - p0[0]), float(v[1] - v[0])
        best_p, best_v = float(p0[i]), float(v[j])
        p0 = torch.linspace(max(lo, best_p - 2 * dp), min(hi, best_p + 2 * dp), 41, dtype=torch.float64)
        v = torch.linspace(best_v - 2 * dv, best_v + 2 * dv, 41, dtype=torch.float64)
    fitted = _fold_grid(torch.tensor([best_p]), torch.tensor([best_v]), lo, hi, frames)[0, 0]
    return best_p, best_v, pos - fitted


def direction_of(velocity: tuple[float, float]) -> str:
    """Name of the dominant axis and sign of ``(vy, vx)`` (see :data:`full.synthetic.DIRECTIONS`), or ``static``."""
    vy, vx = velocity
    if math.hypot(vy, vx) < MIN_SPEED:
        return "static"
    unit = (math.copysign(1.0, vy), 0.0) if abs(vy) >= abs(vx) else (0.0, math.copysign(1.0, vx))
    return next(name for name, d in DIRECTIONS.items() if d == unit)


@dataclass(frozen=True)
class ObjectScore:
    """One object of one video (module doc)."""

    speed: float
    velocity: tuple[float, float]
    physics_error: float
    iou: float
    iou_by_frame: Tensor  # [F]
    bad_frames: float
    present: float  # fraction of frames where it is found
    shape: str  # best-matching shape
    direction: str


def score_object(det: Detection, pixels: int, radius: float) -> ObjectScore:
    """Scores of one :class:`~full.small.detect.Detection` (module doc); an object missing everywhere scores 0."""
    ok = ~det.missing
    frames = torch.arange(len(ok), dtype=torch.float64)[ok]
    bad = float((det.missing | det.duplicated).double().mean())
    if int(ok.sum()) < 2:
        zero = torch.zeros(len(ok))
        return ObjectScore(0.0, (0.0, 0.0), float(pixels), 0.0, zero, bad, float(ok.double().mean()), "none", "static")
    c = det.centre[ok]
    lo, hi = radius, pixels - radius
    fits = [fit_bounce(c[:, a], frames, lo, hi, vmax=pixels / 4) for a in (0, 1)]
    resid = torch.stack([f[2] for f in fits])
    steps = (c[1:] - c[:-1]).norm(dim=1) / (frames[1:] - frames[:-1])
    velocity = (fits[0][1], fits[1][1])
    shape = SHAPES[int(det.shape_iou.sum(1).argmax())]
    iou = det.iou.double()
    return ObjectScore(
        speed=float(steps.mean()),
        velocity=velocity,
        physics_error=float(resid.pow(2).sum(0).mean().sqrt()),
        iou=float(iou[ok].mean()),
        iou_by_frame=iou.float(),
        bad_frames=bad,
        present=float(ok.double().mean()),
        shape=shape,
        direction=direction_of(velocity),
    )


def score_video(rgb: Tensor, scene: Scene) -> list[ObjectScore]:
    """Every captioned object of ``scene`` scored in ``rgb [F, H, W, 3]`` (in [0, 1], square frames)."""
    maps = membership(rgb)
    pixels = rgb.shape[-2]
    out = []
    for obj in scene.objects:
        radius = obj.size * pixels
        out.append(score_object(detect(rgb, obj.colour, obj.shape, radius, maps), pixels, radius))
    return out


def follows(scene: Scene, scores: Sequence[ObjectScore]) -> dict[str, bool]:
    """Whether every object's colour, shape and direction match the caption (and all three at once)."""
    colour = all(s.present >= 0.5 for s in scores)
    shape = colour and all(s.shape == o.shape for s, o in zip(scores, scene.objects))
    direction = colour and all(s.direction == o.direction for s, o in zip(scores, scene.objects))
    return {"colour": colour, "shape": shape, "direction": direction, "all": colour and shape and direction}


FEATURES = ("speed", "abs_velocity", "physics_error", "iou", "bad_frames")


def features(scores: Sequence[ObjectScore]) -> Tensor:
    """Per-video feature vector ``[len(FEATURES)]`` (objects averaged)."""
    rows = [[s.speed, math.hypot(*s.velocity), s.physics_error, s.iou, s.bad_frames] for s in scores]
    return torch.tensor(rows, dtype=torch.float64).mean(0)


def energy_distance(x: Tensor, y: Tensor) -> float:
    """Energy distance ``2E|X-Y| - E|X-X'| - E|Y-Y'|`` between samples ``x [n, d]`` and ``y [m, d]`` (unbiased
    within-sample terms; n, m ≥ 2)."""
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError("energy distance needs at least 2 samples on each side")
    xx = torch.cdist(x, x).sum() / (n * (n - 1))
    yy = torch.cdist(y, y).sum() / (m * (m - 1))
    return float(2 * torch.cdist(x, y).mean() - xx - yy)


@dataclass(frozen=True)
class VideoSetScores:
    """Scores of a set of videos: per-video ``features [N, d]`` and the summary means (:meth:`summary`)."""

    features: Tensor
    follows: list[dict[str, bool]]
    iou_by_frame: Tensor  # [F], mean over videos and objects

    def summary(self, reference: Tensor | None = None) -> dict[str, float]:
        """Means of the metrics; with ``reference`` (data features ``[M, d]``) the energy distance to it."""
        f = self.features
        out = {name: float(f[:, i].mean()) for i, name in enumerate(FEATURES)}
        out["dynamic_degree"] = out.pop("speed")
        for key in ("colour", "shape", "direction", "all"):
            out[f"follows_{key}"] = sum(x[key] for x in self.follows) / len(self.follows)
        if reference is not None:
            out["energy_distance"] = scaled_energy_distance(f, reference)
        return out


def scaled_energy_distance(f: Tensor, reference: Tensor) -> float:
    """:func:`energy_distance` after scaling each feature by the reference set's std (floored at 1e-3)."""
    scale = reference.std(0).clamp_min(1e-3)
    return energy_distance(f / scale, reference / scale)


def score_videos(rgb: Tensor, scenes: Sequence[Scene]) -> VideoSetScores:
    """Scores of videos ``rgb [N, F, H, W, 3]`` generated for ``scenes`` (their captions)."""
    if len(rgb) != len(scenes):
        raise ValueError(f"{len(rgb)} videos for {len(scenes)} scenes")
    per_video = [score_video(v, s) for v, s in zip(rgb, scenes)]
    return VideoSetScores(
        features=torch.stack([features(s) for s in per_video]),
        follows=[follows(sc, s) for sc, s in zip(scenes, per_video)],
        iou_by_frame=torch.stack([o.iou_by_frame for s in per_video for o in s]).mean(0),
    )
