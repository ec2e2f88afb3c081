"""``cf-ref full compare``: every recipe on the small track's data, seed by seed, and the outputs.

First the base model, once for the whole comparison and shared by every seed (:func:`full.small.run.prepare_base`).
For each seed (:mod:`full.small.run`): the training set, every recipe's stages (shared ones once),
then the scores (:mod:`full.small.evaluate`) of the base model, the AR teacher, and each recipe's student after its
initialisation (``init``: the ODE / CD / AR-teacher weights DMD starts from) and after DMD (``dmd``). Then
``compare.json`` (every per-seed score and the mean ± std over seeds), ``compare.md`` and the figures
(:mod:`full.small.figures`). The folder remembers what it holds (``compare-request.json``: preset and variants);
another request there is refused. Everything finished is reused, so an interrupted compare resumes.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from cf_ref.errors import InvalidValue, UserError
from cf_ref.io import to_plain, write_json, write_text
from cf_ref.machine import machine_info
from cf_ref.recipes import Recipe
from full.config import parse_override
from full.distributed import DistContext, init_distributed
from full.recipes import Stage, recipe_stages
from full.small.evaluate import cached_reference, evaluate
from full.small.figures import write_figures
from full.small.injectivity import pair_injectivity
from full.small.run import BASE_SEED, prepare_base, prepare_seed, providers, recipe_config, run_config, run_recipes
from full.small.settings import SmallSettings, get_settings
from full.small.summary import compare_document, markdown
from full.stage_inputs import final_weights

COMPARED = (Recipe.CAUSAL_FORCING, Recipe.CAUSAL_FORCING_PP, Recipe.SELF_FORCING, Recipe.CAUSVID)
REQUEST = "compare-request.json"


class CompareFolderError(UserError):
    """The output folder holds another comparison."""


def parse_recipes(names: Sequence[str]) -> tuple[Recipe, ...]:
    """Recipes by name (all four compared ones when empty); an unknown name lists the known ones."""
    known = {r.value: r for r in Recipe}
    bad = [n for n in names if n not in known]
    if bad:
        raise InvalidValue(f"unknown recipe {bad[0]!r}; known recipes: {', '.join(sorted(known))}")
    return tuple(known[n] for n in dict.fromkeys(names)) if names else COMPARED


def claim_folder(out: Path, request: dict[str, Any]) -> None:
    """Record ``request`` in ``out/compare-request.json``, or check it against the one recorded there."""
    path = out / REQUEST
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved != json.loads(json.dumps(request)):
            diff = sorted(k for k in set(saved) | set(request) if saved.get(k) != request.get(k))
            what = ", ".join(f"{k}: {saved.get(k)!r} (asked {request.get(k)!r})" for k in diff)
            raise CompareFolderError(f"{out} holds another comparison ({what}); use another --out folder")
        return
    if out.is_dir() and any(out.iterdir()):
        raise CompareFolderError(f"{out} is not empty and holds no comparison; use another --out folder")
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, request)


def init_weights(config_for, recipe: Recipe, owner: dict[Stage, Recipe]) -> tuple[str, Path]:
    """Name and weights of the student DMD starts from (the last stage before ``dmd``, by whoever ran it)."""
    chain = recipe_stages(recipe)
    stage = chain[-2]
    provider = owner[stage]
    return f"{provider.value}.{stage.value}", final_weights(config_for(provider), stage)


def cached_injectivity(settings, config, teacher: Path | None, seed: int, folder: Path) -> dict[str, Any]:
    """:func:`full.small.injectivity.pair_injectivity`, cached in ``folder/injectivity.json``."""
    path = folder / "injectivity.json"
    if not path.is_file():
        write_json(path, pair_injectivity(settings, config, teacher, seed))
    return json.loads(path.read_text(encoding="utf-8"))


def evaluate_seed(
    settings: SmallSettings, seed_dir: Path, seed: int, recipes: Sequence[Recipe], variants: Sequence[str]
) -> dict[str, Any]:
    """Scores of the base model, the AR teacher (if trained) and each recipe's init and DMD student on this seed."""
    folder = seed_dir / "eval"
    owners = providers(recipes)

    def config_for(r: Recipe):
        return recipe_config(settings, seed_dir, seed, r, owners[r], variants)

    base_config = run_config(settings, seed_dir, seed, recipes[0], variants)
    out: dict[str, Any] = {"reference": cached_reference(settings, seed, folder)}
    out["base"] = evaluate("base", "base", base_config, None, settings, seed, folder)
    teacher = next((owners[r][Stage.AR_DIFFUSION] for r in recipes if Stage.AR_DIFFUSION in owners[r]), None)
    weights = None
    if teacher is not None:
        weights = final_weights(config_for(teacher), Stage.AR_DIFFUSION)
        out["ar-teacher"] = evaluate("ar-teacher", "ar-teacher", base_config, weights, settings, seed, folder)
    out["injectivity"] = cached_injectivity(settings, base_config, weights, seed, folder)
    out["recipes"] = {}
    for r in recipes:
        name, weights = init_weights(config_for, r, owners[r])
        init = evaluate(name, "student", config_for(r), weights, settings, seed, folder)
        dmd_weights = final_weights(config_for(r), Stage.DMD)
        dmd = evaluate(f"{r.value}.dmd", "student", config_for(r), dmd_weights, settings, seed, folder)
        out["recipes"][r.value] = {"init": init, "dmd": dmd}
    return out


def base_model(settings: SmallSettings, out: Path, ctx: DistContext | None, variants) -> dict[str, Any]:
    """Train (or reuse) the shared base model; its folder, seed and this invocation's CPU / wall seconds for it."""
    t0 = time.process_time(), time.perf_counter()
    torch.set_num_threads(1)  # as for the seeds: on shared cores a second thread mostly spins
    folder = prepare_base(settings, out, ctx or init_distributed("cpu"), variants)
    return {
        "shared": True,
        "folder": str(folder.relative_to(out)),
        "data_seed": BASE_SEED,
        "cpu_s": time.process_time() - t0[0],
        "wall_s": time.perf_counter() - t0[1],
    }


def run_seed(preset: str, out: Path, seed: int, recipes, variants, ctx: DistContext | None = None):
    """One seed: data, base model, every recipe, the scores; returns ``(seed, scores, {cpu_s, wall_s})``."""
    settings = get_settings(preset)
    ctx = ctx or init_distributed("cpu")
    torch.set_num_threads(1)  # small tensors gain nothing from more threads; on a loaded machine they spin
    seed_dir = out / f"seed-{seed}"
    t0 = time.process_time(), time.perf_counter()
    prepare_seed(settings, seed_dir, seed)
    run_recipes(settings, seed_dir, seed, recipes, ctx, variants)
    result = evaluate_seed(settings, seed_dir, seed, recipes, variants)
    return seed, result, {"cpu_s": time.process_time() - t0[0], "wall_s": time.perf_counter() - t0[1]}


def _run_seed_job(args) -> tuple:
    return run_seed(*args)


def run_compare(
    preset: str,
    seeds: int,
    out: str | Path,
    recipes: Sequence[str] = (),
    variants: Sequence[str] = (),
    ctx: DistContext | None = None,
    figures: bool = True,
    jobs: int = 1,
) -> dict[str, Any]:
    """Run the comparison (module doc) and write its outputs; returns the ``compare.json`` document. ``jobs``: seeds
    run in that many processes at once (each single-process, CPU)."""
    settings = get_settings(preset)
    if seeds < 1:
        raise InvalidValue(f"--seeds must be >= 1, got {seeds}")
    chosen = parse_recipes(recipes)
    for v in variants:
        parse_override(v)  # a malformed variant is refused before anything is written
    out = Path(out)
    claim_folder(out, {"preset": preset, "variants": list(variants)})
    if jobs < 1:
        raise InvalidValue(f"--jobs must be >= 1, got {jobs}")
    base = base_model(settings, out, ctx, variants)
    args = [(preset, out, seed, chosen, tuple(variants)) for seed in range(seeds)]
    if jobs == 1:
        done = [run_seed(*a, ctx=ctx) for a in args]
    else:
        with ProcessPoolExecutor(min(jobs, seeds), mp_context=multiprocessing.get_context("spawn")) as pool:
            done = list(pool.map(_run_seed_job, args))
    per_seed = {seed: result for seed, result, _ in done}
    timings = {seed: t for seed, _, t in done}
    result = compare_document(settings, chosen, variants, per_seed, timings, machine_info(), base)
    write_json(out / "compare.json", to_plain(result))
    write_text(out / "compare.md", markdown(result))
    if figures:
        write_figures(result, settings, out)
    return result
