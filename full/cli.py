"""``cf-ref full …``: the video track (causal Wan2.1 DiT)."""

from __future__ import annotations

import click


@click.group()
def full() -> None:
    """The full track: Wan2.1-T2V-1.3B made causal (teacher forcing, KV cache), sampled and trained in three stages."""
