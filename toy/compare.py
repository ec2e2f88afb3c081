"""The recipes side by side over seeds: ``compare.json``, a markdown table (mean ± std) and figures.

Also writes the output of one recipe (``cf-ref toy pipeline``). Figures: samples per recipe per frame
(after initialisation and after DMD), each metric against the DMD step per recipe ("can DMD repair a bad
initialisation?"), and rollouts of the teacher-forcing vs the diffusion-forcing AR teacher.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402
from tqdm import tqdm  # noqa: E402

from cf_ref.io import load_tensors, save_tensors, write_json, write_text  # noqa: E402
from cf_ref.machine import machine_info  # noqa: E402
from toy.experiment import Preset  # noqa: E402
from toy.pipeline import SeedRun, jsonable, recipe_stage_keys  # noqa: E402
from toy.plots import save_figure  # noqa: E402
from toy.recipes import RECIPES, PipelineConfig, Recipe  # noqa: E402
from toy.stages import Forcing  # noqa: E402
from toy.velocity_errors import History  # noqa: E402

QUALITY = ("energy_distance", "off_manifold_fraction", "mode_coverage", "variance_ratio")
"""Sample metrics compared across recipes (``variance_ratio`` is averaged over frames here; per frame in
:func:`per_frame_variance_ratio`)."""

STAGES = ("base", "ar_teacher", "init", "dmd")
FIGURE_DPI = 100


def _metric(samples: dict[str, Any], name: str) -> float:
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


def summarise_recipe(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over seeds of the quality metrics after initialisation and after DMD, and of stage times."""
    seeds = sorted(per_seed)
    out: dict[str, Any] = {}
    for phase, role in (("init", "init"), ("final", "dmd")):
        out[phase] = {m: mean_std([_metric(per_seed[s][role]["samples"], m) for s in seeds]) for m in QUALITY}
        out[phase]["variance_ratio_per_frame"] = per_frame_variance_ratio([per_seed[s][role] for s in seeds])
    out["seconds"] = {
        role: mean_std([per_seed[s][role]["seconds"] for s in seeds]) for role in STAGES if role in per_seed[seeds[0]]
    }
    out["seconds"]["total"] = mean_std([sum(per_seed[s][r]["seconds"] for r in per_seed[s]) for s in seeds])
    return out


def summarise_teachers(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per forcing: velocity errors (clean / noisy history), rollout quality and wall time, mean ± std."""
    seeds = sorted(per_seed)
    out = {}
    for forcing in Forcing:
        recs = [per_seed[s][forcing.value] for s in seeds]
        row = {f"velocity_error_{h.value}": mean_std([r["velocity_error"][h.value] for r in recs]) for h in History}
        row.update({m: mean_std([_metric(r["samples"], m) for r in recs]) for m in QUALITY})
        row["variance_ratio_per_frame"] = per_frame_variance_ratio(recs)
        row["seconds"] = mean_std([r["seconds"] for r in recs])
        out[forcing.value] = row
    return out


def fmt(stat: dict[str, Any], digits: int = 3) -> str:
    """``mean ± std`` with ``digits`` significant digits (plain ``mean`` for a single seed)."""
    m, s = stat["mean"], stat["std"]
    if math.isnan(m):
        return "–"
    if len(stat["values"]) == 1:
        return f"{m:.{digits}g}"
    return f"{m:.{digits}g} ± {s:.2g}"


def markdown_table(result: dict[str, Any]) -> str:
    """The comparison as markdown: recipes (init → after DMD), stage wall times, AR teachers, base model."""
    seeds = result["seeds"]
    lines = [
        f"# Toy pipeline: recipes side by side ({result['preset']} preset, dataset {result['dataset']}, "
        f"seeds {seeds}; mean ± std over seeds)",
        "",
        "## Few-step causal generator: after initialisation → after DMD",
        "",
        "| recipe | energy distance | off-manifold fraction | mode coverage | variance ratio, per frame |",
        "|---|---|---|---|---|",
    ]
    for name, rec in result["recipes"].items():
        s = rec["summary"]
        cells = [f"{fmt(s['init'][m])} → {fmt(s['final'][m])}" for m in QUALITY[:-1]]
        cells.append(
            f"{_frames(s['init']['variance_ratio_per_frame'])} → {_frames(s['final']['variance_ratio_per_frame'])}"
        )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Wall time per stage (s)", "", "| recipe | " + " | ".join(STAGES) + " | total |", "|---" * 6 + "|"]
    for name, rec in result["recipes"].items():
        sec = rec["summary"]["seconds"]
        cells = [fmt(sec[r], 2) if r in sec else "–" for r in (*STAGES, "total")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Shared stages (the base model for every recipe, the teacher-forcing AR teacher for three) are trained once "
        "per seed and counted in every recipe that uses them. The ar-diffusion-init recipe has no initialisation "
        "stage of its own.",
        "",
        "## AR diffusion teacher: teacher forcing vs diffusion forcing (multi-step AR rollouts on clean "
        "self-generated history)",
        "",
        "| teacher | velocity error, clean history | velocity error, noisy history | energy distance | "
        "off-manifold fraction | mode coverage | variance ratio, per frame | time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["teachers"].items():
        keys = ("velocity_error_clean", "velocity_error_noisy", *QUALITY[:-1])
        cells = [fmt(row[k]) for k in keys] + [_frames(row["variance_ratio_per_frame"]), fmt(row["seconds"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    b = result["base"]
    lines += [
        "",
        "## Bidirectional base model (joint PF-ODE samples)",
        "",
        "| velocity error | energy distance | off-manifold fraction | mode coverage | variance ratio, per frame | "
        "time (s) |",
        "|---|---|---|---|---|---|",
        "| "
        + " | ".join(fmt(b[k]) for k in ("velocity_error", *QUALITY[:-1]))
        + " | "
        + _frames(b["variance_ratio_per_frame"])
        + " | "
        + fmt(b["seconds"])
        + " |",
        "",
        f"Energy distance of fresh data against the same reference (the noise floor; an exact sampler scores within "
        f"it): {fmt(result['energy_noise_floor'])} over {len(result['energy_noise_floor']['values'])} draws.",
        "",
        "Velocity errors are relative RMS errors against the exact teachers (σ uniform). Variance ratios are the "
        "per-frame sample variance over the data's, frame 0 first, means over seeds (std in compare.json). The "
        "off-manifold fraction of data itself is at most 0.001 by construction.",
    ]
    return "\n".join(lines) + "\n"


def _frames(stats: list[dict[str, Any]]) -> str:
    return " / ".join(f"{s['mean']:.2f}" for s in stats)


def _frame_axes_limits(reference: Tensor) -> list[tuple[float, float]]:
    lo, hi = reference.amin(dim=(0, 1)), reference.amax(dim=(0, 1))
    pad = 0.15 * (hi - lo)
    return [(float(a), float(b)) for a, b in zip(lo - pad, hi + pad)]


def plot_samples(rows: dict[str, Tensor], path: Path, title: str, max_points: int = 1000) -> None:
    """One row per model, one column per frame: 2-D scatter of the first two dims (histogram for d = 1);
    scatters show the first ``max_points`` samples (rasterised, so the PDF stays small)."""
    reference = rows["data"]
    f, d = reference.shape[1:]
    limits = _frame_axes_limits(reference)
    fig, axes = plt.subplots(len(rows), f, figsize=(2.2 * f, 2.0 * len(rows)), squeeze=False)
    for r, (label, x) in enumerate(rows.items()):
        for i in range(f):
            ax = axes[r, i]
            if d == 1:
                bins = torch.linspace(*limits[0], 60)
                ax.hist(reference[:, i, 0].numpy(), bins=bins.numpy(), color="0.8", density=True)
                ax.hist(x[:, i, 0].numpy(), bins=bins.numpy(), histtype="step", color="C0", density=True)
            else:
                pts = x[:max_points, i]
                ax.scatter(
                    pts[:, 0].numpy(), pts[:, 1].numpy(), s=1, alpha=0.4, color="C0" if r else "0.3", rasterized=True
                )
                ax.set_xlim(*limits[0])
                ax.set_ylim(*limits[1])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {i}", fontsize=9)
            if i == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path.parent, path.stem, FIGURE_DPI, tight=False)


def plot_dmd_curves(per_recipe_curves: dict[str, list[list[dict[str, Any]]]], path: Path) -> None:
    """Energy distance and off-manifold fraction against the DMD step, mean over seeds with a min–max band."""
    names = ("energy_distance", "off_manifold_fraction")
    fig, axes = plt.subplots(1, len(names), figsize=(5.0 * len(names), 3.6), squeeze=False)
    for c, (recipe, curves) in enumerate(per_recipe_curves.items()):
        steps = [p["step"] for p in curves[0]]
        for ax, name in zip(axes[0], names):
            values = torch.tensor([[_metric(p, name) for p in curve] for curve in curves])
            ax.plot(steps, values.mean(0).numpy(), color=f"C{c}", label=recipe)
            ax.fill_between(steps, values.amin(0).numpy(), values.amax(0).numpy(), color=f"C{c}", alpha=0.15)
    for ax, name in zip(axes[0], names):
        ax.set_xlabel("DMD generator step")
        ax.set_ylabel(name.replace("_", " "))
    axes[0, 0].set_yscale("symlog", linthresh=1e-2)  # linear below 0.01 (sampling noise), logarithmic above
    axes[0, 0].set_ylim(bottom=0)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Can DMD repair a bad initialisation? (mean over seeds, band = min–max)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path.parent, path.stem, FIGURE_DPI, tight=False)


def run_compare(
    config: PipelineConfig,
    seeds: Sequence[int],
    out: Path,
    preset: Preset | None = None,
    recipes: Sequence[Recipe] = tuple(Recipe),
) -> dict[str, Any]:
    """Run every recipe on every seed (shared stages once per seed) and write compare.json / compare.md / figures."""
    out = Path(out)
    per_seed: dict[Recipe, dict[int, dict[str, Any]]] = {r: {} for r in recipes}
    teachers: dict[int, dict[str, Any]] = {}
    base: dict[int, dict[str, Any]] = {}
    floors: dict[int, dict[str, Any]] = {}
    first: SeedRun | None = None
    with tqdm(total=len(seeds) * (len(recipes) + 1), desc="compare", unit="run") as bar:
        for seed in seeds:
            run = SeedRun(config, seed)
            for recipe in recipes:
                bar.set_postfix_str(f"seed {seed} {recipe.value}")
                per_seed[recipe][seed] = run.run(recipe)
                bar.update()
            teachers[seed] = run.teacher_ablation()
            base[seed] = run.records["base"]
            floors[seed] = run.noise_floor()
            bar.update()
            first = first or run
    result = {
        "preset": None if preset is None else preset.value,
        "dataset": first.data.name,
        "seeds": list(seeds),
        "machine": machine_info(),
        "config": jsonable(config),
        "recipes": {
            r.value: {
                "chain": jsonable(RECIPES[r]),
                "summary": summarise_recipe(per_seed[r]),
                "per_seed": {str(s): per_seed[r][s] for s in seeds},
            }
            for r in recipes
        },
        "energy_noise_floor": mean_std([v for s in seeds for v in floors[s]["draws"]]),
        "teachers": summarise_teachers(teachers),
        "teachers_per_seed": {str(s): teachers[s] for s in seeds},
        "base": {
            "velocity_error": mean_std([base[s]["velocity_error"] for s in seeds]),
            **{m: mean_std([_metric(base[s]["samples"], m) for s in seeds]) for m in QUALITY},
            "variance_ratio_per_frame": per_frame_variance_ratio([base[s] for s in seeds]),
            "seconds": mean_std([base[s]["seconds"] for s in seeds]),
        },
    }
    write_json(out / "compare.json", result)
    write_text(out / "compare.md", markdown_table(result))
    save_tensors(out / "samples.safetensors", first.samples, metadata={"seed": str(first.seed)})
    write_compare_figures(result, first.samples, first.seed, out)
    return result


def write_compare_figures(result: dict[str, Any], samples: dict[str, Tensor], seed: int, out: Path) -> None:
    """The comparison's figures from its result dict and one seed's evaluation samples (see :func:`redraw`)."""
    recipes = [Recipe(name) for name in result["recipes"]]
    init_rows = {"data": samples["data"]}
    final_rows = {"data": samples["data"]}
    for r in recipes:
        keys = recipe_stage_keys(r)
        init_rows[f"{r.value}\n({RECIPES[r].init.value})"] = samples[keys["init"]]
        final_rows[r.value] = samples[keys["dmd"]]
    plot_samples(init_rows, out / "samples_init", f"After initialisation (seed {seed})")
    plot_samples(final_rows, out / "samples_dmd", f"After DMD (seed {seed})")
    teacher_rows = {"data": samples["data"]}
    teacher_rows.update({f.value: samples[f"ar_teacher/{f.value}"] for f in Forcing})
    plot_samples(teacher_rows, out / "teachers", f"AR teacher rollouts on clean self-generated history (seed {seed})")
    curves = {
        name: [per_seed["dmd"]["curve"] for per_seed in rec["per_seed"].values()]
        for name, rec in result["recipes"].items()
    }
    plot_dmd_curves(curves, out / "dmd_curves")


def redraw(out: Path) -> None:
    """Redraw a comparison's table and figures from its compare.json and samples.safetensors (no training)."""
    out = Path(out)
    result = json.loads((out / "compare.json").read_text())
    tensors = load_tensors(out / "samples.safetensors")
    write_text(out / "compare.md", markdown_table(result))
    write_compare_figures(result, tensors, result["seeds"][0], out)


def run_pipeline(config: PipelineConfig, recipe: Recipe, seed: int, out: Path, preset: Preset | None = None) -> dict:
    """One recipe on one seed: pipeline.json (every stage's record) and its sample / DMD-curve figures."""
    out = Path(out)
    run = SeedRun(config, seed)
    stages = run.run(recipe)
    result = {
        "recipe": recipe.value,
        "chain": jsonable(RECIPES[recipe]),
        "preset": None if preset is None else preset.value,
        "seed": seed,
        "dataset": run.data.name,
        "machine": machine_info(),
        "config": jsonable(config),
        "stages": stages,
    }
    write_json(out / "pipeline.json", result)
    keys = recipe_stage_keys(recipe)
    rows = {"data": run.samples["data"], "after init": run.samples[keys["init"]], "after DMD": run.samples[keys["dmd"]]}
    plot_samples(rows, out / "samples", f"{recipe.value} (seed {seed})")
    plot_dmd_curves({recipe.value: [stages["dmd"]["curve"]]}, out / "dmd_curve")
    return result
