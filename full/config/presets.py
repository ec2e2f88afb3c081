"""Named configuration presets, applied after the recipe and before the file (see :mod:`full.config`)."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        # Tiny models + the synthetic moving-shapes set (generated into <out>/data; the base model is a tiny
        # DiT trained on it first, see full.stages.base), CPU, fp32. Step counts: a demo, not a result.
        "out": "runs/tiny",
        "model": {"preset": "tiny", "block_size": 2},
        "video": {"latent_frames": 4, "latent_height": 8, "latent_width": 8},
        "schedule": {"ode_steps": 8},
        # one thread: tiny tensors gain nothing from more, and a loaded machine makes them spin (4 min vs 30 s)
        "parallel": {"strategy": "ddp", "precision": "fp32", "gradient_checkpointing": False, "cpu_threads": 1},
        "logging": {"progress": True, "sample_every": 0},
        "ar_diffusion": {"loop": {"steps": 150, "batch_size": 4, "checkpoint_every": 50}, "optim": {"lr": 1e-3}},
        # guidance 1: a synthetic caption fixes the colour exactly, so CFG w > 1 scales the colour w-fold
        "ode_pairs": {"guidance_scale": 1.0, "batch_size": 8, "shard_size": 16, "max_pairs": 64},
        "ode": {"loop": {"steps": 150, "batch_size": 4, "checkpoint_every": 50}, "optim": {"lr": 1e-3}},
        "cd": {
            "guidance_scale": 1.0,
            "loop": {"steps": 150, "batch_size": 4, "checkpoint_every": 50},
            "optim": {"lr": 1e-3},
        },
        "dmd": {
            "guidance_scale": 1.0,
            "ema_start": 0,
            "loop": {"steps": 100, "batch_size": 2, "checkpoint_every": 50},
            "optim": {"lr": 1e-4},
            "critic_optim": {"lr": 1e-3},
        },
    }
}
PRESETS["tiny-ti2v-5b"] = {
    **PRESETS["tiny"],
    # the same demo on a Wan2.2-TI2V-5B-shaped tiny model (48 latent channels; full.tiny.TINY_TI2V_5B)
    "out": "runs/tiny-ti2v-5b",
    "model": {"preset": "tiny-ti2v-5b", "block_size": 2},
}
"""``tiny`` is the offline CPU demo (``cf-ref full train --preset tiny``); ``tiny-ti2v-5b`` runs it on the
Wan2.2-TI2V-5B-shaped tiny model."""
