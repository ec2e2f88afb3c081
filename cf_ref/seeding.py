"""Reproducible randomness for both tracks: every random draw comes from a generator seeded by a pure function
of names, e.g. ``(run seed, stage, step, rank, purpose)`` in the full track or ``(seed, "pipeline", stage)`` in
the toy.

This is what makes a resumed run exact without replaying anything (step t draws the same noise, σ's, exit
steps and data order whether the run was interrupted before it or not), and what lets a toy recipe give the
same numbers alone or beside the others. Draws that must agree on every process (the self-forcing exit step,
which fixes how many forward passes each process runs — FSDP needs the same number everywhere) leave the rank
out of the parts.

    seed = SHA-256(repr(parts))[:8] (little endian) & (2^63 - 1)
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts, stable across processes, platforms and Python runs.

    ``parts`` are hashed through their ``repr`` (so ``derive_seed(0, "a")`` differs from ``derive_seed("0", "a")``).
    """
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(device: torch.device | str, *parts: object) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`derive_seed` of ``parts``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*parts))
    return g
