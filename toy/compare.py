"""``cf-ref toy compare`` and ``cf-ref toy pipeline``: run recipes on seeds (:class:`toy.pipeline.SeedRun`) and
write their outputs.

``compare`` runs every recipe on every seed (shared stages once per seed) and writes ``compare.json`` (schema in
docs/toy.md §8), ``compare.md`` (:mod:`toy.compare_table`), ``samples.safetensors`` (the first seed's evaluation
samples) and the figures (:mod:`toy.compare_figures`); :func:`redraw` rebuilds the table and figures from the two
files. ``pipeline`` runs one recipe on one seed and writes ``pipeline.json`` and its figures.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cf_ref.io import load_tensors, save_tensors, to_plain, write_json, write_text
from cf_ref.machine import machine_info
from cf_ref.recipes import RECIPES, Recipe
from toy.compare_figures import plot_dmd_curves, plot_samples, write_compare_figures
from toy.compare_summary import mean_std, summarise_base, summarise_recipe, summarise_teachers
from toy.compare_table import markdown_table
from toy.pipeline import SeedRun, recipe_stage_keys
from toy.pipeline_config import PipelineConfig
from toy.preset import Preset


@dataclass
class SeedRecords:
    """What :func:`run_compare` keeps of each seed: every recipe's chain, the AR teachers, the base model and the
    energy distance's noise floor (all stage records of :class:`toy.pipeline.SeedRun`)."""

    recipes: dict[Recipe, dict[int, dict[str, Any]]]
    teachers: dict[int, dict[str, Any]] = field(default_factory=dict)
    base: dict[int, dict[str, Any]] = field(default_factory=dict)
    floors: dict[int, dict[str, Any]] = field(default_factory=dict)


def _run_seeds(config: PipelineConfig, seeds: Sequence[int], recipes: Sequence[Recipe]) -> tuple[SeedRecords, SeedRun]:
    """Every recipe on every seed, with a progress bar; returns the records and the first seed's run."""
    records, first = SeedRecords({r: {} for r in recipes}), None
    with tqdm(total=len(seeds) * (len(recipes) + 1), desc="compare", unit="run") as bar:
        for seed in seeds:
            run = SeedRun(config, seed)
            for recipe in recipes:
                bar.set_postfix_str(f"seed {seed} {recipe.value}")
                records.recipes[recipe][seed] = run.run(recipe)
                bar.update()
            records.teachers[seed] = run.teacher_ablation()
            records.base[seed] = run.records["base"]
            records.floors[seed] = run.noise_floor()
            bar.update()
            first = first or run
    return records, first


def compare_result(
    config: PipelineConfig, seeds: Sequence[int], records: SeedRecords, dataset: str, preset: Preset | None
) -> dict[str, Any]:
    """The ``compare.json`` document from the per-seed records (see module doc)."""
    s = [str(seed) for seed in seeds]
    return {
        "preset": None if preset is None else preset.value,
        "dataset": dataset,
        "seeds": list(seeds),
        "machine": machine_info(),
        "config": to_plain(config),
        "recipes": {
            r.value: {
                "chain": to_plain(RECIPES[r]),
                "summary": summarise_recipe(per_seed),
                "per_seed": dict(zip(s, (per_seed[seed] for seed in seeds))),
            }
            for r, per_seed in records.recipes.items()
        },
        "energy_noise_floor": mean_std([v for seed in seeds for v in records.floors[seed]["draws"]]),
        "teachers": summarise_teachers(records.teachers),
        "teachers_per_seed": dict(zip(s, (records.teachers[seed] for seed in seeds))),
        "base": summarise_base(records.base),
    }


def run_compare(
    config: PipelineConfig,
    seeds: Sequence[int],
    out: Path,
    preset: Preset | None = None,
    recipes: Sequence[Recipe] = tuple(Recipe),
) -> dict[str, Any]:
    """Run every recipe on every seed (shared stages once per seed) and write compare.json / compare.md / figures."""
    out = Path(out)
    records, first = _run_seeds(config, seeds, recipes)
    result = compare_result(config, seeds, records, first.data.name, preset)
    write_json(out / "compare.json", result)
    write_text(out / "compare.md", markdown_table(result))
    save_tensors(out / "samples.safetensors", first.samples, metadata={"seed": str(first.seed)})
    write_compare_figures(result, first.samples, first.seed, out)
    return result


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
        "chain": to_plain(RECIPES[recipe]),
        "preset": None if preset is None else preset.value,
        "seed": seed,
        "dataset": run.data.name,
        "machine": machine_info(),
        "config": to_plain(config),
        "stages": stages,
    }
    write_json(out / "pipeline.json", result)
    keys = recipe_stage_keys(recipe)
    rows = {"data": run.samples["data"], "after init": run.samples[keys["init"]], "after DMD": run.samples[keys["dmd"]]}
    plot_samples(rows, out / "samples", f"{recipe.value} (seed {seed})")
    plot_dmd_curves({recipe.value: [stages["dmd"]["curve"]]}, out / "dmd_curve")
    return result
