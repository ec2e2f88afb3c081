"""The data and model knobs shared by the small track's probe scripts (``small_base_probe``,
``small_direction_probe``): the small preset with its data's start rule, speed range, caption length, backdrop and
patch code, and its DiT's depth, replaced from the command line (the DiT's ``latent_channels`` follow the patch code:
``3·p²``)."""

from __future__ import annotations

import argparse
import dataclasses

from full.small.settings import SmallSettings, get_settings
from full.synthetic import BACKDROPS


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """The shared options (defaults: the data of the earliest probes, start anywhere at 0.04-0.07)."""
    p.add_argument("--start", default="anywhere", help="where a shape starts (full.synthetic._bounce_start)")
    p.add_argument("--layers", type=int, default=2, help="DiT layers (the preset: 2)")
    p.add_argument("--speed", default="0.04,0.07", help="BounceSpec.speed: lo,hi (frame sizes per frame)")
    p.add_argument("--text-length", type=int, default=8, help="caption tokens (5: the words only, no padding)")
    p.add_argument("--backdrop", default="plain", choices=BACKDROPS, help="BounceSpec.backdrop (walls: drawn)")
    p.add_argument("--patch", type=int, default=2, help="the patch code's p (1: 8×8 tokens per 16×16 frame)")


def probe_settings(a: argparse.Namespace, eval_videos: int | None = None) -> SmallSettings:
    """The small preset with the options of :func:`add_data_arguments` (and ``eval_videos`` if given)."""
    settings = get_settings("small")
    data = dataclasses.replace(
        settings.data,
        start=a.start,
        speed=tuple(float(v) for v in a.speed.split(",")),
        text_length=a.text_length,
        backdrop=a.backdrop,
        patch=a.patch,
    )
    model = dataclasses.replace(settings.model, num_layers=a.layers, latent_channels=data.channels)
    out = dataclasses.replace(settings, data=data, model=model)
    return out if eval_videos is None else dataclasses.replace(out, eval_videos=eval_videos)
