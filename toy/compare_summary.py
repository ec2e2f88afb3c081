"""The recipes' numbers over seeds: mean ± standard deviation of every stage record ``cf-ref toy compare`` keeps.

A statistic ``S`` is ``{"mean", "std", "values": [per seed]}`` (:func:`mean_std`); the functions here turn the
per-seed stage records of :class:`toy.pipeline.SeedRun` into the ``summary`` blocks of ``compare.json``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from cf_ref.recipes import Forcing
from toy.velocity_errors import History

QUALITY = ("energy_distance", "off_manifold_fraction", "mode_coverage", "variance_ratio")
"""Sample metrics compared across recipes (``variance_ratio`` is averaged over frames here; per frame in
:func:`per_frame_variance_ratio`)."""

STAGES = ("base", "ar_teacher", "init", "dmd")
"""The stage roles of a recipe's chain, in order."""


def metric(samples: dict[str, Any], name: str) -> float:
    """One sample metric of a record as a float (a per-frame list is averaged; a missing one is NaN)."""
    value = samples.get(name, math.nan)
    return float(sum(value) / len(value)) if isinstance(value, list) else float(value)


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """``{"mean", "std", "values"}`` over seeds (sample standard deviation; 0 for a single value)."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    std = float(t.std(unbiased=True)) if len(t) > 1 else 0.0
    return {"mean": float(t.mean()), "std": std, "values": [float(v) for v in values]}


def per_frame_variance_ratio(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per frame, mean ± std over seeds of the sample-variance ratio to the data, from stage records."""
    ratios = [r["samples"]["variance_ratio"] for r in records]
    return [mean_std([seed[i] for seed in ratios]) for i in range(len(ratios[0]))]


def quality_summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every :data:`QUALITY` metric and the per-frame variance ratio of one stage over seeds."""
    out: dict[str, Any] = {m: mean_std([metric(r["samples"], m) for r in records]) for m in QUALITY}
    out["variance_ratio_per_frame"] = per_frame_variance_ratio(records)
    return out


def summarise_recipe(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over seeds of the quality metrics after initialisation and after DMD, and of stage times."""
    seeds = sorted(per_seed)
    out: dict[str, Any] = {
        phase: quality_summary([per_seed[s][role] for s in seeds])
        for phase, role in (("init", "init"), ("final", "dmd"))
    }
    out["seconds"] = {
        role: mean_std([per_seed[s][role]["seconds"] for s in seeds]) for role in STAGES if role in per_seed[seeds[0]]
    }
    out["seconds"]["total"] = mean_std([sum(per_seed[s][r]["seconds"] for r in per_seed[s]) for s in seeds])
    return out


def summarise_teachers(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per forcing: velocity errors (clean / noisy history), rollout quality and wall time, mean ± std."""
    out = {}
    for forcing in Forcing:
        recs = [per_seed[s][forcing.value] for s in sorted(per_seed)]
        row = {f"velocity_error_{h.value}": mean_std([r["velocity_error"][h.value] for r in recs]) for h in History}
        row.update(quality_summary(recs))
        row["seconds"] = mean_std([r["seconds"] for r in recs])
        out[forcing.value] = row
    return out


def summarise_base(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The bidirectional base model's velocity error, sample quality and wall time, mean ± std over seeds."""
    recs = [per_seed[s] for s in sorted(per_seed)]
    return {
        "velocity_error": mean_std([r["velocity_error"] for r in recs]),
        **quality_summary(recs),
        "seconds": mean_std([r["seconds"] for r in recs]),
    }
