"""``compare.json`` and ``compare.md`` of the small track: per-seed scores, mean ± std over seeds, the base check.

The base model must reach the data's metrics within :data:`BASE_TOLERANCE` before distillation means anything:
dynamic degree within ±15 % of the data's, physics error at most 0.5 px above it, IoU at most 0.1 below it, at most
5 % bad frames, at least 90 % of videos following their caption.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from cf_ref.io import to_plain
from cf_ref.recipes import Recipe

METRICS = ("dynamic_degree", "physics_error", "iou", "bad_frames", "follows_all", "energy_distance")
LABELS = {
    "dynamic_degree": "speed px/frame",
    "physics_error": "physics err px",
    "iou": "IoU",
    "bad_frames": "bad frames",
    "follows_all": "follows caption",
    "energy_distance": "energy dist.",
}


def check_base(base: Mapping[str, float], data: Mapping[str, float]) -> dict[str, bool]:
    """Per item of :data:`BASE_TOLERANCE`: whether the ``base`` model's summary is within it of the ``data``'s."""
    return {
        "dynamic_degree": abs(base["dynamic_degree"] / data["dynamic_degree"] - 1) <= 0.15,
        "physics_error": base["physics_error"] <= data["physics_error"] + 0.5,
        "iou": base["iou"] >= data["iou"] - 0.1,
        "bad_frames": base["bad_frames"] <= 0.05,
        "follows_all": base["follows_all"] >= 0.9,
    }


BASE_TOLERANCE = "speed ±15 %, physics error ≤ data + 0.5 px, IoU ≥ data − 0.1, bad frames ≤ 5 %, follows ≥ 90 %"


def base_check_line(base: Mapping[str, float], data: Mapping[str, float]) -> str:
    """One line of a base model's summary scores and the :data:`BASE_TOLERANCE` items it fails against ``data``."""
    failed = [k for k, ok in check_base(base, data).items() if not ok]
    return (
        f"speed {base['dynamic_degree']:.2f} physics {base['physics_error']:.2f} IoU {base['iou']:.3f} "
        f"bad {base['bad_frames']:.2f} colour/shape/direction {base['follows_colour']:.2f}/"
        f"{base['follows_shape']:.2f}/{base['follows_direction']:.2f} all {base['follows_all']:.2f} "
        f"energy {base['energy_distance']:.0f} failed: {', '.join(failed) or 'none'}"
    )


def mean_std(rows: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Per key: mean and sample standard deviation over ``rows`` (0 for one row)."""
    out = {}
    for key in rows[0]:
        values = [float(r[key]) for r in rows]
        out[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


def _mean_curve(curves: Sequence[Sequence[float]]) -> list[float]:
    return [statistics.fmean(c[i] for c in curves) for i in range(len(curves[0]))]


def _per_model(runs: Sequence[Any], recipes: Sequence[Recipe]) -> tuple[dict[str, list], dict[str, list]]:
    """Per scored model (data, base, AR teacher, each recipe's init and DMD): its summaries and per-frame IoU curves,
    one per seed."""
    scored = {"base": [r["base"] for r in runs]}
    if "ar-teacher" in runs[0]:
        scored["ar-teacher"] = [r["ar-teacher"] for r in runs]
    for rec in recipes:
        for when in ("init", "dmd"):
            scored[f"{rec.value}/{when}"] = [r["recipes"][rec.value][when] for r in runs]
    rows = {"data": [r["reference"]["data"] for r in runs], **{k: [x["summary"] for x in v] for k, v in scored.items()}}
    curves = {"data": [r["reference"]["iou_by_frame"] for r in runs]}
    curves.update({k: [x["iou_by_frame"] for x in v] for k, v in scored.items()})
    return rows, curves


def compare_document(
    settings,
    recipes: Sequence[Recipe],
    variants: Sequence[str],
    per_seed: Mapping[int, Any],
    timings,
    machine,
    base=None,
) -> dict[str, Any]:
    """The ``compare.json`` document (module doc) from :func:`full.small.compare.evaluate_seed`'s per-seed results;
    ``base``: how the shared base model was made (:func:`full.small.compare.base_model`)."""
    seeds = sorted(per_seed)
    runs = [per_seed[s] for s in seeds]
    rows, curves = _per_model(runs, recipes)
    summary = {k: mean_std(v) for k, v in rows.items()}
    base_ok = [check_base(r["base"]["summary"], r["reference"]["data"]) for r in runs]
    return {
        "preset": settings.name,
        "recipes": [r.value for r in recipes],
        "variants": list(variants),
        "seeds": seeds,
        "machine": machine,
        "settings": to_plain(settings),
        "timings": {str(s): timings[s] for s in seeds if s in timings},
        "base_model": dict(base or {}),
        "noise_floor": mean_std([r["reference"]["floor"] for r in runs])["energy_distance"],
        "summary": summary,
        "iou_by_frame": {k: _mean_curve(v) for k, v in curves.items()},
        "injectivity": {
            k: _mean_curve([r["injectivity"]["eta_by_frame"][k] for r in runs])
            for k in runs[0]["injectivity"]["eta_by_frame"]
        },
        "base_check": {
            "tolerance": BASE_TOLERANCE,
            "per_seed": base_ok,
            "passed": all(all(b.values()) for b in base_ok),
        },
        "per_seed": {str(s): per_seed[s] for s in seeds},
    }


def _cell(stat: Mapping[str, float] | None) -> str:
    if stat is None:
        return "–"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def markdown(result: Mapping[str, Any]) -> str:
    """``compare.md``: the mean ± std table over seeds, the noise floor and the base check."""
    head = "| model | " + " | ".join(LABELS[m] for m in METRICS) + " |"
    lines = [
        f"# Small-track comparison — preset `{result['preset']}`, seeds {result['seeds']}",
        "",
        f"Variants: {', '.join(result['variants']) or 'none'}. Mean ± std over seeds; energy distance to the data's "
        f"per-video features (noise floor, data vs fresh data: {_cell(result['noise_floor'])}).",
        "",
        head,
        "|" + "---|" * (len(METRICS) + 1),
    ]
    for name, stats in result["summary"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(stats.get(m)) for m in METRICS) + " |")
    lines += ["", "Non-injectivity η of the ODE pairs per frame (0: the student sees all the frame depends on):", ""]
    for teacher, eta in result["injectivity"].items():
        lines.append(f"- {teacher} pairs: " + ", ".join(f"{x:.3f}" for x in eta))
    check = result["base_check"]
    verdict = "passed" if check["passed"] else "FAILED"
    lines += ["", f"Base model against the data ({check['tolerance']}): {verdict} on every seed."]
    if not check["passed"]:
        lines.append("Per seed: " + "; ".join(", ".join(k for k, ok in b.items() if not ok) for b in check["per_seed"]))
    base = result.get("base_model") or {}
    if base.get("shared"):
        lines += [
            "",
            f"One base model for every seed (`{base['folder']}`, trained once on the scenes of seed "
            f"{base['data_seed']}; the seeds vary the distillation stages and the held-out captions).",
        ]
    times = result["timings"]
    if times:
        total = sum(t["cpu_s"] for t in times.values()), sum(t["wall_s"] for t in times.values())
        lines += ["", f"Time: {total[0]:.0f} CPU s, {total[1]:.0f} s wall (this invocation's seeds)."]
        if base.get("shared"):
            lines[-1] = lines[-1][:-1] + f"; base model {base['cpu_s']:.0f} CPU s, {base['wall_s']:.0f} s wall."
    return "\n".join(lines) + "\n"
