"""Recipes: which stages run, in which order, with which stage options, and which output feeds which stage.

=================== ============================================== ==========================================
recipe              stages                                         fixed options
=================== ============================================== ==========================================
causal-forcing      ar-diffusion → ode-pairs → ode → dmd           pairs from the AR teacher (clean context);
                                                                   DMD with self-forcing rollout
causal-forcing-pp   ar-diffusion → cd → dmd                        CD along the AR teacher's PF-ODE; self rollout
self-forcing        ode-pairs → ode → dmd                          pairs from the bidirectional model, one ODE state
                                                                   per block; self rollout
causvid             ode-pairs → ode → dmd                          bidirectional pairs, one ODE state per block;
                                                                   DMD generator conditioned on clean data
                                                                   context (no self rollout)
=================== ============================================== ==========================================

Stage outputs live in ``<out>/<stage>/``; a training stage's final weights are
``<out>/<stage>/final/model.safetensors`` (its EMA, where kept, ``ema.safetensors`` beside it), the ODE
pairs are the set ``<out>/ode-pairs/``. :func:`stage_inputs` resolves what a stage starts from: an explicit
``<stage>.init`` / ``ode.pairs`` in the configuration, else the previous stage of the recipe, else the base model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from full.config import ConfigError, Recipe, RunConfig, Stage


@dataclass(frozen=True)
class RecipeSpec:
    stages: tuple[Stage, ...]
    settings: dict[str, Any]  # configuration layer applied before preset / file / overrides
    summary: str


RECIPES: dict[Recipe, RecipeSpec] = {
    Recipe.CAUSAL_FORCING: RecipeSpec(
        (Stage.AR_DIFFUSION, Stage.ODE_PAIRS, Stage.ODE, Stage.DMD),
        {"ode_pairs": {"teacher": "ar"}, "dmd": {"rollout": "self"}},
        "AR teacher by teacher forcing → causal ODE pairs → ODE regression → asymmetric DMD (self rollout)",
    ),
    Recipe.CAUSAL_FORCING_PP: RecipeSpec(
        (Stage.AR_DIFFUSION, Stage.CD, Stage.DMD),
        {"dmd": {"rollout": "self"}},
        "AR teacher by teacher forcing → causal consistency distillation → asymmetric DMD (self rollout)",
    ),
    Recipe.SELF_FORCING: RecipeSpec(
        (Stage.ODE_PAIRS, Stage.ODE, Stage.DMD),
        {"ode_pairs": {"teacher": "bidirectional"}, "ode": {"index_granularity": "block"}, "dmd": {"rollout": "self"}},
        "bidirectional ODE pairs → ODE regression → DMD with self rollout",
    ),
    Recipe.CAUSVID: RecipeSpec(
        (Stage.ODE_PAIRS, Stage.ODE, Stage.DMD),
        {"ode_pairs": {"teacher": "bidirectional"}, "ode": {"index_granularity": "block"}, "dmd": {"rollout": "data"}},
        "bidirectional ODE pairs → ODE regression → DMD on clean data context (no self rollout)",
    ),
}


def recipe_settings(recipe: Recipe) -> dict[str, Any]:
    """The configuration layer a recipe contributes (see :func:`full.config.build_config`)."""
    return {"recipe": recipe.value, **RECIPES[recipe].settings}


def stage_dir(config: RunConfig, stage: Stage) -> Path:
    return Path(config.out) / stage.value


def final_weights(config: RunConfig, stage: Stage) -> Path:
    """Where a training stage leaves its final weights."""
    return stage_dir(config, stage) / "final" / "model.safetensors"


@dataclass(frozen=True)
class StageInputs:
    """What a stage starts from: ``init`` weights (None = the base model) and, for ``ode``, the pair set."""

    init: Path | None
    pairs: Path | None = None


def _previous(config: RunConfig, stage: Stage, candidates: tuple[Stage, ...]) -> Stage | None:
    chain = RECIPES[config.recipe].stages
    before = chain[: chain.index(stage)] if stage in chain else chain
    for s in reversed(before):
        if s in candidates:
            return s
    return None


def _must_exist(path: Path, stage: Stage, source: str) -> Path:
    if not path.exists():
        raise ConfigError(
            f"stage {stage.value} starts from {source} at {path}, which does not exist; "
            f"run that stage first or point {stage.value.replace('-', '_')}.init / ode.pairs at an existing file"
        )
    return path


def stage_inputs(config: RunConfig, stage: Stage, check: bool = True) -> StageInputs:
    """Resolve the inputs of ``stage`` (see module doc); with ``check`` a missing file is a clear error."""
    section = getattr(config, stage.value.replace("-", "_"))
    explicit = Path(section.init) if section.init else None
    trained = (Stage.AR_DIFFUSION,)
    if stage is Stage.AR_DIFFUSION:
        init = explicit
    elif stage is Stage.ODE_PAIRS:
        from full.config import PairTeacher

        prev = _previous(config, stage, trained) if config.ode_pairs.teacher is PairTeacher.AR else None
        if config.ode_pairs.teacher is PairTeacher.AR and explicit is None and prev is None:
            raise ConfigError(
                "ode_pairs.teacher=ar needs an AR teacher: this recipe has no ar-diffusion stage, "
                "so set ode_pairs.init to the AR teacher's weights"
            )
        init = explicit or (final_weights(config, prev) if prev else None)
    elif stage in (Stage.ODE, Stage.CD):
        prev = _previous(config, stage, trained)
        init = explicit or (final_weights(config, prev) if prev else None)
        if stage is Stage.CD and init is None:
            raise ConfigError("cd distils along an AR teacher's PF-ODE: set cd.init or use a recipe with ar-diffusion")
    else:  # DMD
        prev = _previous(config, stage, (Stage.ODE, Stage.CD))
        init = explicit or (final_weights(config, prev) if prev else None)
    pairs = None
    if stage is Stage.ODE:
        pairs = Path(config.ode.pairs) if config.ode.pairs else stage_dir(config, Stage.ODE_PAIRS)
        if check:
            _must_exist(pairs / "index.json", stage, "the ODE-pair set")
    if check and init is not None:
        _must_exist(init, stage, "the weights")
    return StageInputs(init=init, pairs=pairs)
