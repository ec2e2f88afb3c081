r"""Find each captioned shape in an RGB video by its colour (the small track's detector).

A pixel ``x`` (RGB in [0, 1]) is explained by palette colour ``c`` as a blend with the grey background ``g``:
``α_c(x) = clip((x - g)·(c - g) / |c - g|², 0, 1)``, residual ``r_c(x) = |x - g - α_c (c - g)|``. Each pixel goes to
the colour of least residual among those with ``α_c > α_min`` and counts ``α_c`` towards that colour's *membership*
map ``m_c [F, H, W]`` (0 elsewhere), so a blurred or faded shape keeps its mass and a wrong colour has none.

Per frame and object (:class:`Detection`): mass ``Σ m``; centre = mass-weighted centroid (pixels, ``(i + ½)``
convention); *missing* when mass < ½ of the clean shape's; *duplicated* when ``m > ½`` has two or more connected
components of ≥ 2 pixels or the mass exceeds 1.6× the clean shape's; soft IoU ``Σ min(m, s) / Σ max(m, s)`` against
the clean shape ``s`` rendered at the detected centre (0 when missing) — 1 for a perfect rendering, lower when blurred,
faded, deformed or spread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from full.synthetic import BACKGROUND, COLOURS, SHAPES, occupancy, palette

ALPHA_MIN = 0.1
SOFTNESS = 0.35  # edge width of the clean rendering (full.synthetic.render_scene's)


def membership(rgb: Tensor) -> Tensor:
    """Membership maps ``[K, F, H, W]`` of the :data:`full.synthetic.COLOURS` palette for ``rgb [F, H, W, 3]``."""
    x = rgb.float() - BACKGROUND
    d = torch.stack([palette(c) - BACKGROUND for c in COLOURS])  # [K, 3]
    alpha = (torch.einsum("fhwc,kc->kfhw", x, d) / (d * d).sum(1)[:, None, None, None]).clamp(0.0, 1.0)
    resid = (x[None] - alpha[..., None] * d[:, None, None, None]).norm(dim=-1)
    resid = torch.where(alpha > ALPHA_MIN, resid, torch.full_like(resid, float("inf")))
    best = resid.argmin(0)
    chosen = torch.arange(len(COLOURS))[:, None, None, None] == best[None]
    return torch.where(chosen & (alpha > ALPHA_MIN), alpha, torch.zeros_like(alpha))


def clean_shape(shape: str, centre: Tensor, pixels: int, radius: float) -> Tensor:
    """Clean occupancy ``[F, H, W]`` (below ``ALPHA_MIN`` set to 0, as in :func:`membership`) of ``shape`` at ``centre [F, 2]`` (pixels) with half-width / radius ``radius`` px."""
    grid = torch.arange(pixels, dtype=torch.float64) + 0.5
    ddy = grid[None, :, None] - centre[:, 0, None, None]
    ddx = grid[None, None, :] - centre[:, 1, None, None]
    occ = occupancy(shape, ddy, ddx, radius, SOFTNESS).float()
    return torch.where(occ > ALPHA_MIN, occ, torch.zeros_like(occ))  # as membership() sees it


def soft_iou(a: Tensor, b: Tensor) -> Tensor:
    """Per-frame soft IoU ``Σ min(a, b) / Σ max(a, b)`` of maps ``[F, H, W]`` → ``[F]``."""
    return torch.minimum(a, b).sum((1, 2)) / torch.maximum(a, b).sum((1, 2)).clamp_min(1e-9)


def components(mask: Tensor, min_pixels: int = 2) -> Tensor:
    """Number ``[F]`` of 4-connected components of at least ``min_pixels`` pixels in each frame of ``mask [F, H, W]``."""
    counts = []
    for frame in mask.numpy():
        labels, n = ndimage.label(frame)
        sizes = np.bincount(labels.ravel())[1:] if n else np.zeros(0)
        counts.append(int((sizes >= min_pixels).sum()))
    return torch.tensor(counts)


@dataclass(frozen=True)
class Detection:
    """One object in one video: ``mass``, ``missing``, ``duplicated``, ``iou`` per frame ``[F]``, ``centre [F, 2]``
    (pixels, (y, x)) and the soft IoU of each shape of :data:`full.synthetic.SHAPES` (``shape_iou [S, F]``)."""

    mass: Tensor
    centre: Tensor
    missing: Tensor
    duplicated: Tensor
    iou: Tensor
    shape_iou: Tensor


def detect(rgb: Tensor, colour: str, shape: str, radius: float, maps: Tensor | None = None) -> Detection:
    """Detect the ``colour`` ``shape`` (half-width / radius ``radius`` px) in ``rgb [F, H, W, 3]`` (module doc).
    ``maps``: :func:`membership` of ``rgb`` if already computed."""
    maps = membership(rgb) if maps is None else maps
    m = maps[COLOURS.index(colour)].double()
    pixels = m.shape[-1]
    grid = torch.arange(pixels, dtype=torch.float64) + 0.5
    mass = m.sum((1, 2))
    safe = mass.clamp_min(1e-9)
    centre = torch.stack([(m.sum(2) * grid).sum(1) / safe, (m.sum(1) * grid).sum(1) / safe], dim=1)
    mid = torch.full((1, 2), pixels / 2.0, dtype=torch.float64)
    ious = []
    for s in SHAPES:
        reference = float(clean_shape(s, mid, pixels, radius).sum())
        ious.append(soft_iou(m.float(), clean_shape(s, centre, pixels, radius)))
        if s == shape:
            expected = reference
    missing = mass < 0.5 * expected
    duplicated = ~missing & ((components(m > 0.5) >= 2) | (mass > 1.6 * expected))
    shape_iou = torch.stack(ious) * (~missing).float()
    return Detection(mass.float(), centre, missing, duplicated, shape_iou[SHAPES.index(shape)], shape_iou)
