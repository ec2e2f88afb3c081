"""The small track's presets: data, model sizes, base-model training, the stage budgets every recipe gets.

``smoke`` runs every stage in seconds (the tests); ``small`` is the comparison of ``docs/small.md``, sized for
2 CPU cores. The stage settings are a configuration layer of :class:`full.config.RunConfig` (the same stages as a
real run; the recipe's own layer, the run's paths and the ``--variant`` overrides go on top); the base model is
:func:`full.tiny.tiny_transformer` at ``model`` sizes, pretrained by :func:`full.stages.base.pretrain_tiny_base`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cf_ref.errors import InvalidValue
from full.config import TinyBaseConfig
from full.synthetic import BounceSpec
from full.tiny import TinyConfig


@dataclass(frozen=True)
class SmallSettings:
    """One preset: the ``data`` set (its seed replaced per run seed), the DiT ``model`` sizes, the ``base`` model's
    pretraining, the ``stages`` configuration layer, and how many videos each model is scored on."""

    name: str
    data: BounceSpec
    model: TinyConfig
    base: TinyBaseConfig
    stages: dict[str, Any] = field(default_factory=dict)
    eval_videos: int = 64
    fps: int = 6


def _layer(frames: int, latent: int, loops: dict[str, tuple[int, int]], ode_steps: int, pairs: int) -> dict:
    """The stage layer: video size, CPU fp32, no previews, the per-stage (steps, batch) ``loops``."""

    def loop(stage: str) -> dict:
        steps, batch = loops[stage]
        return {"steps": steps, "batch_size": batch, "checkpoint_every": max(1, steps // 2), "keep_checkpoints": 1}

    return {
        "model": {"block_size": 3},
        "video": {"latent_frames": frames, "latent_height": latent, "latent_width": latent},
        # no shift: Wan's 5 serves 60×104 latents; at 8×8 it leaves too few low-noise draws to learn sharp edges
        "schedule": {"ode_steps": ode_steps, "shift": 1.0},
        "parallel": {"strategy": "ddp", "precision": "fp32", "gradient_checkpointing": False, "cpu_threads": 1},
        "logging": {"progress": False, "sample_count": 0},
        "ar_diffusion": {"loop": loop("ar_diffusion"), "optim": {"lr": 1e-3}},
        # guidance 1: the synthetic caption fixes the colour exactly, so CFG w > 1 only over-saturates it
        "ode_pairs": {"guidance_scale": 1.0, "batch_size": 32, "shard_size": 64, "max_pairs": pairs},
        "ode": {"loop": loop("ode"), "optim": {"lr": 1e-3}},
        "cd": {"guidance_scale": 1.0, "loop": loop("cd"), "optim": {"lr": 1e-3}},
        "dmd": {
            "guidance_scale": 1.0,
            "ema_start": 0,
            "ema_decay": 0.9,
            "loop": loop("dmd"),
            "optim": {"lr": 2e-4, "betas": (0.0, 0.999)},
            "critic_optim": {"lr": 1e-3, "betas": (0.0, 0.999)},
        },
    }


SMOKE = SmallSettings(
    name="smoke",
    data=BounceSpec(count=16, frames=6, pixels=8, patch=2, size=0.2, speed=(0.05, 0.1), text_length=8, text_dim=16),
    model=TinyConfig(latent_channels=12, num_layers=1, num_heads=2, head_dim=16, ffn_dim=32, text_dim=16),
    base=TinyBaseConfig(steps=4, batch_size=4, lr=2e-3, videos=16, warmup=2, cosine=True, ema_decay=0.5),
    stages=_layer(6, 4, {"ar_diffusion": (3, 4), "ode": (3, 4), "cd": (3, 4), "dmd": (2, 2)}, 4, 8),
    eval_videos=4,
)

SMALL = SmallSettings(
    name="small",
    # a shape starts in the half of its moving axis it moves away from, at 0.48-0.8 px / frame: 93 % of its frame
    # steps go the captioned way (was 56 %: starting anywhere at 0.64-1.12 px / frame, 93 % of videos bounced), so
    # the direction word names the video's motion, which a RoPE-only DiT (no absolute position) can relate to
    data=BounceSpec(
        count=512, frames=12, pixels=16, patch=2, speed=(0.03, 0.05), text_length=8, text_dim=32, start="behind"
    ),
    model=TinyConfig(latent_channels=12, num_layers=2, num_heads=4, head_dim=32, ffn_dim=256, text_dim=32, freq_dim=64),
    # one base model per comparison: 5000 steps of 16 (80 k videos seen, 4096 scenes), warm-up + cosine decay
    # (an EMA, decay 0.999, scored below the last weights at the end of the cosine decay: docs/small.md)
    base=TinyBaseConfig(steps=5000, batch_size=16, lr=1e-3, videos=4096, warmup=200, cosine=True),
    stages=_layer(12, 8, {"ar_diffusion": (300, 8), "ode": (300, 8), "cd": (200, 8), "dmd": (300, 4)}, 16, 128),
    eval_videos=48,
)

SETTINGS = {s.name: s for s in (SMOKE, SMALL)}


def get_settings(name: str) -> SmallSettings:
    """The preset ``name``; an unknown name lists the known ones."""
    if name not in SETTINGS:
        raise InvalidValue(f"unknown small-track preset {name!r}; known: {', '.join(sorted(SETTINGS))}")
    return SETTINGS[name]
