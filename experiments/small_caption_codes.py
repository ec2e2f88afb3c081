"""Caption codes for the small track's direction probes: the shipped word vectors, or a per-axis ± direction code.

``words`` is :func:`full.synthetic.embed_caption` (word i ↦ a fixed N(0, 1) vector of word i, zero padding).
``axis`` replaces the four direction words by ``e = dx·h + dy·v`` with ``(dy, dx)`` the word's unit step
(:data:`full.synthetic.DIRECTIONS`) and ``h ⊥ v``, ``|h| = |v| = √D``: "left" = −"right", "up" = −"down", the two
axes orthogonal — the caption then states the motion's sign and axis linearly. Shapes ``[L, D]``.
"""

from __future__ import annotations

import zlib

import torch
from torch import Tensor

from full.synthetic import DIRECTIONS, embed_caption

CODES = ("words", "axis")


def direction_axes(dim: int) -> tuple[Tensor, Tensor]:
    """Orthogonal ``h, v [D]`` of norm √D (Gram-Schmidt on two fixed N(0, 1) draws)."""
    h, v = (
        torch.randn(dim, generator=torch.Generator().manual_seed(zlib.crc32(w))) for w in (b"horizontal", b"vertical")
    )
    v = v - (v @ h) / (h @ h) * h
    return h * dim**0.5 / h.norm(), v * dim**0.5 / v.norm()


def embed(caption: str, length: int, dim: int, code: str = "words") -> Tensor:
    """``[L, D]`` token vectors of ``caption`` under ``code`` (one of :data:`CODES`)."""
    if code not in CODES:
        raise ValueError(f"caption code must be one of {CODES}, got {code!r}")
    out = embed_caption(caption, length, dim)
    if code == "axis":
        h, v = direction_axes(dim)
        for i, word in enumerate(caption.lower().split()[:length]):
            if word in DIRECTIONS:
                dy, dx = DIRECTIONS[word]
                out[i] = dx * h + dy * v
    return out
