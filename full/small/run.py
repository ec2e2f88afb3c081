"""One seed of the small-track comparison: data, base model, every recipe's stages (shared ones once).

**One base model per comparison.** The bidirectional DiT every recipe distils (the role Wan2.1 plays in the paper:
given, not part of the recipe) is pretrained once by flow matching (:func:`full.stages.base.pretrain_tiny_base`)
in ``base/`` beside the seeds — ``base/data/`` (its training set: ``base.videos`` scenes of seed :data:`BASE_SEED`),
``base/base-pretrain/`` (its training log and checkpoints), ``base/base-model/`` — and shared by every seed; the
seeds vary the distillation stages. A resumed compare reuses it.

Layout under the seed's folder ``seed-<s>/``: ``data/`` (the stages' training set,
:func:`full.synthetic.write_bounce_latents`) and one ``cf-ref full train`` output folder per recipe,
``<recipe>/<stage>/``, run through :func:`full.pipeline.run_training` (``--resume``: a finished stage is skipped, an
interrupted one continues).

**Shared stages.** Two recipes whose chains hold the same stage with the same inputs run it once
(:func:`stage_key`): the AR teacher of causal-forcing and causal-forcing-pp, the bidirectional ODE pairs and ODE
student of self-forcing and causvid. The later recipe skips it and its next stage starts from the earlier
recipe's output (``<stage>.init`` / ``ode.pairs`` pointed there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from cf_ref.recipes import RECIPES, Recipe
from full.config import RunConfig, merge, parse_override
from full.config.layers import from_dict_checked
from full.data import SetKind, TensorSet
from full.distributed import DistContext
from full.pipeline import run_training
from full.recipes import Stage, recipe_settings, recipe_stages
from full.small.settings import SmallSettings
from full.stage_inputs import FEEDS, final_weights, stage_dir
from full.stages.base import pretrain_tiny_base
from full.synthetic import write_bounce_latents

BASE, BASE_SEED = "base", 0

CONSUMER_KEY = {Stage.ODE_PAIRS: "ode_pairs.init", Stage.ODE: "ode.init", Stage.CD: "cd.init", Stage.DMD: "dmd.init"}
"""The setting that points a stage at the weights it starts from (``ode.pairs`` for an ODE stage fed by pairs)."""


def stage_key(recipe: Recipe, stage: Stage) -> tuple:
    """What a stage's output depends on besides the shared settings: equal keys → the same output."""
    spec = RECIPES[recipe]
    if stage in (Stage.AR_DIFFUSION, Stage.CD):
        return (stage,)
    if stage is Stage.ODE_PAIRS:
        return (stage, spec.pair_teacher)
    if stage is Stage.ODE:
        return (stage, spec.pair_teacher, spec.state_granularity)
    return (stage, recipe)


def providers(recipes: Sequence[Recipe]) -> dict[Recipe, dict[Stage, Recipe]]:
    """Who runs each stage of each recipe: the first recipe (in ``recipes`` order) with the same :func:`stage_key`."""
    first: dict[tuple, Recipe] = {}
    out: dict[Recipe, dict[Stage, Recipe]] = {}
    for r in recipes:
        out[r] = {s: first.setdefault(stage_key(r, s), r) for s in recipe_stages(r)}
    return out


def run_config(
    settings: SmallSettings, seed_dir: Path, seed: int, recipe: Recipe, variants: Sequence[str]
) -> RunConfig:
    """The configuration of ``recipe`` on this seed: recipe layer → preset stages → paths → ``variants``."""
    layer = merge(
        settings.stages,
        {
            "out": str(seed_dir / recipe.value),
            "seed": seed,
            "model": {"path": str(base_dir(seed_dir.parent) / "base-model")},
            "data": {"latents": str(seed_dir / "data")},
        },
    )
    for v in variants:
        layer = merge(layer, parse_override(v))
    return from_dict_checked(merge(recipe_settings(recipe), layer))


def shared_inputs(
    settings: SmallSettings, seed_dir: Path, seed: int, recipe: Recipe, owner: dict[Stage, Recipe], variants=()
) -> list[str]:
    """Overrides pointing each stage this recipe runs at a shared stage's output where it starts from one."""
    chain, out = recipe_stages(recipe), []
    for i, s in enumerate(chain):
        if owner[s] is not recipe:
            continue
        before = chain[:i]
        init = next((p for p in reversed(before) if p in FEEDS[s]), None)
        if init is not None and owner[init] is not recipe:
            provider = run_config(settings, seed_dir, seed, owner[init], variants)
            out.append(f"{CONSUMER_KEY[s]}={final_weights(provider, init)}")
        if s is Stage.ODE and Stage.ODE_PAIRS in before and owner[Stage.ODE_PAIRS] is not recipe:
            provider = run_config(settings, seed_dir, seed, owner[Stage.ODE_PAIRS], variants)
            out.append(f"ode.pairs={stage_dir(provider, Stage.ODE_PAIRS)}")
    return out


def recipe_config(
    settings: SmallSettings, seed_dir: Path, seed: int, recipe: Recipe, owner: dict[Stage, Recipe], variants=()
) -> RunConfig:
    """:func:`run_config` with the shared stages' outputs pointed at (module doc)."""
    shared = shared_inputs(settings, seed_dir, seed, recipe, owner, variants)
    return run_config(settings, seed_dir, seed, recipe, [*variants, *shared])


def base_dir(out: Path) -> Path:
    """The comparison's shared base-model folder (module doc)."""
    return Path(out) / BASE


def write_data(settings: SmallSettings, folder: Path, seed: int, count: int | None = None) -> Path:
    """The preset's training set (``count`` scenes, default the preset's) of ``seed`` in ``folder`` (skipped when
    already complete)."""
    if not (folder / "index.json").is_file():
        count = settings.data.count if count is None else count
        write_bounce_latents(folder, dataclasses.replace(settings.data, seed=seed, count=count))
    return folder


def prepare_base(settings: SmallSettings, out: Path, ctx: DistContext, variants=()) -> Path:
    """The shared base model ``base/base-model`` (module doc; skipped when already saved); returns its folder."""
    folder = base_dir(out)
    model = folder / "base-model"
    if not (model / "config.json").is_file():
        data = write_data(settings, folder / "data", BASE_SEED, settings.base.videos)
        config = run_config(settings, out / f"seed-{BASE_SEED}", BASE_SEED, Recipe.CAUSAL_FORCING, variants)
        config = merge_base(config, settings, folder)
        pretrain_tiny_base(config, ctx, TensorSet(data, SetKind.LATENTS), model, settings.model)
    return model


def prepare_seed(settings: SmallSettings, seed_dir: Path, seed: int) -> None:
    """The seed's training set (skipped when already complete)."""
    write_data(settings, seed_dir / "data", seed)


def merge_base(config: RunConfig, settings: SmallSettings, folder: Path) -> RunConfig:
    """``config`` with the base pretraining's settings and ``folder`` as its output."""
    model = dataclasses.replace(config.model, tiny_base=settings.base)
    return dataclasses.replace(config, model=model, out=str(folder))


def run_recipes(
    settings: SmallSettings, seed_dir: Path, seed: int, recipes: Sequence[Recipe], ctx: DistContext, variants=()
) -> dict[Recipe, RunConfig]:
    """Every recipe's own stages on this seed (shared ones by their first recipe); returns each recipe's config."""
    owners = providers(recipes)
    configs = {}
    for r in recipes:
        config = recipe_config(settings, seed_dir, seed, r, owners[r], variants)
        for s in recipe_stages(r):
            if owners[r][s] is r:
                run_training(config, stage=s, resume=True, ctx=ctx)
        configs[r] = config
    return configs
