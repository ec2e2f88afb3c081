"""``compare.md``: the comparison of ``cf-ref toy compare`` as markdown tables, from ``compare.json`` alone.

Sections: the few-step generator of every recipe (after initialisation → after DMD), wall time per stage, the AR
teacher ablation (teacher vs diffusion forcing), the bidirectional base model, and the energy distance's noise
floor. Cells are ``mean ± std`` over seeds (:func:`fmt`).
"""

from __future__ import annotations

import math
from typing import Any

from toy.compare_summary import QUALITY, STAGES

SAMPLE_METRICS = QUALITY[:-1]
"""The metrics shown as columns (the variance ratio is shown per frame instead)."""


def fmt(stat: dict[str, Any], digits: int = 3) -> str:
    """``mean ± std`` with ``digits`` significant digits (plain ``mean`` for a single seed; ``–`` for NaN)."""
    m, s = stat["mean"], stat["std"]
    if math.isnan(m):
        return "–"
    if len(stat["values"]) == 1:
        return f"{m:.{digits}g}"
    return f"{m:.{digits}g} ± {s:.2g}"


def frames(stats: list[dict[str, Any]]) -> str:
    """Per-frame means, ``a / b / c / d``."""
    return " / ".join(f"{s['mean']:.2f}" for s in stats)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _recipes(result: dict[str, Any]) -> list[str]:
    lines = [
        "## Few-step causal generator: after initialisation → after DMD",
        "",
        "| recipe | energy distance | off-manifold fraction | mode coverage | variance ratio, per frame |",
        "|---|---|---|---|---|",
    ]
    for name, rec in result["recipes"].items():
        s = rec["summary"]
        cells = [f"{fmt(s['init'][m])} → {fmt(s['final'][m])}" for m in SAMPLE_METRICS]
        cells.append(
            f"{frames(s['init']['variance_ratio_per_frame'])} → {frames(s['final']['variance_ratio_per_frame'])}"
        )
        lines.append(_row([name, *cells]))
    return lines


def _times(result: dict[str, Any]) -> list[str]:
    lines = ["## Wall time per stage (s)", "", _row(["recipe", *STAGES, "total"]), "|---" * 6 + "|"]
    for name, rec in result["recipes"].items():
        sec = rec["summary"]["seconds"]
        lines.append(_row([name, *(fmt(sec[r], 2) if r in sec else "–" for r in (*STAGES, "total"))]))
    return lines + [
        "",
        "Shared stages (the base model for every recipe, the teacher-forcing AR teacher for three) are trained once "
        "per seed and counted in every recipe that uses them. The ar-diffusion-init recipe has no initialisation "
        "stage of its own.",
    ]


def _teachers(result: dict[str, Any]) -> list[str]:
    lines = [
        "## AR diffusion teacher: teacher forcing vs diffusion forcing (multi-step AR rollouts on clean "
        "self-generated history)",
        "",
        "| teacher | velocity error, clean history | velocity error, noisy history | energy distance | "
        "off-manifold fraction | mode coverage | variance ratio, per frame | time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for forcing, row in result["teachers"].items():
        cells = [fmt(row[k]) for k in ("velocity_error_clean", "velocity_error_noisy", *SAMPLE_METRICS)]
        lines.append(_row([f"{forcing} forcing", *cells, frames(row["variance_ratio_per_frame"]), fmt(row["seconds"])]))
    return lines


def _base(result: dict[str, Any]) -> list[str]:
    b = result["base"]
    cells = [fmt(b[k]) for k in ("velocity_error", *SAMPLE_METRICS)]
    return [
        "## Bidirectional base model (joint PF-ODE samples)",
        "",
        "| velocity error | energy distance | off-manifold fraction | mode coverage | variance ratio, per frame | "
        "time (s) |",
        "|---|---|---|---|---|---|",
        _row([*cells, frames(b["variance_ratio_per_frame"]), fmt(b["seconds"])]),
    ]


def markdown_table(result: dict[str, Any]) -> str:
    """The comparison as markdown (see module doc)."""
    floor = result["energy_noise_floor"]
    sections = [
        [
            f"# Toy pipeline: recipes side by side ({result['preset']} preset, dataset {result['dataset']}, "
            f"seeds {result['seeds']}; mean ± std over seeds)"
        ],
        _recipes(result),
        _times(result),
        _teachers(result),
        _base(result),
        [
            f"Energy distance of fresh data against the same reference (the noise floor; an exact sampler scores "
            f"within it): {fmt(floor)} over {len(floor['values'])} draws.",
            "",
            "Velocity errors are relative RMS errors against the exact teachers (σ uniform). Variance ratios are the "
            "per-frame sample variance over the data's, frame 0 first, means over seeds (std in compare.json). The "
            "off-manifold fraction of data itself is at most 0.001 by construction.",
        ],
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"
