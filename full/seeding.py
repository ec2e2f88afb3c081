"""Reproducible randomness: every random draw of a training step comes from a generator seeded by a pure
function of ``(run seed, stage, step, rank, purpose)``.

This is what makes ``--resume`` exact without replaying anything: step t draws the same noise, σ's, exit
steps and data order whether the run was interrupted before it or not. Draws that must agree on every
process (the self-forcing exit step, which fixes how many forward passes each process runs — FSDP needs
the same number everywhere) leave the rank out of the seed.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts, stable across processes and Python runs (SHA-256 of their repr)."""
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(device: torch.device | str, *parts: object) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`derive_seed` of ``parts``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*parts))
    return g
