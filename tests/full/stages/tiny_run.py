"""Settings of the tiny stage runs shared by the stage tests (the fixtures are in conftest.py)."""

from __future__ import annotations

from full.distributed import DistContext
from full.logs import read_metrics

CTX = DistContext()
STEPS = 40
QUICK = [
    "logging.progress=false",
    "logging.sample_count=0",
    "model.tiny_base.steps=0",
    "model.tiny_base.videos=16",
    f"ar_diffusion.loop.steps={STEPS}",
    "ode_pairs.max_pairs=16",
    "schedule.ode_steps=8",
    f"ode.loop.steps={STEPS}",
    f"cd.loop.steps={STEPS}",
    f"dmd.loop.steps={STEPS}",
]


def decrease(path, key: str) -> tuple[float, float]:
    """Mean of ``key`` over the first and the last fifth of a metrics file."""
    values = [r[key] for r in read_metrics(path) if key in r]
    w = max(1, len(values) // 5)
    return sum(values[:w]) / w, sum(values[-w:]) / w
