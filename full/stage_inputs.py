"""Where stage outputs live and what each stage starts from.

Stage outputs live in ``<out>/<stage>/``; a training stage's final weights are
``<out>/<stage>/final/model.safetensors`` (its EMA, where kept, ``ema.safetensors`` beside it), the ODE pairs are
the set ``<out>/ode-pairs/``. :func:`stage_inputs` resolves what a stage starts from: an explicit
``<stage>.init`` / ``ode.pairs`` in the configuration, else the output of the previous stage of the recipe's chain
(:func:`full.recipes.recipe_stages`) that can feed it, else the base model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cf_ref.recipes import PairTeacher
from full.config import ConfigError, RunConfig
from full.recipes import Stage, recipe_stages

FEEDS: dict[Stage, tuple[Stage, ...]] = {
    Stage.AR_DIFFUSION: (),
    Stage.ODE_PAIRS: (Stage.AR_DIFFUSION,),  # with ode_pairs.teacher=ar only
    Stage.ODE: (Stage.AR_DIFFUSION,),
    Stage.CD: (Stage.AR_DIFFUSION,),
    Stage.DMD: (Stage.ODE, Stage.CD, Stage.AR_DIFFUSION),  # the generator: the latest initialisation of the chain
}
"""The stages whose final weights a stage may start from (the latest one in the recipe's chain wins)."""


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


def _previous(config: RunConfig, stage: Stage) -> Stage | None:
    """The last stage before ``stage`` in the recipe's chain whose output can feed it (:data:`FEEDS`)."""
    chain = recipe_stages(config.recipe)
    before = chain[: chain.index(stage)] if stage in chain else chain
    return next((s for s in reversed(before) if s in FEEDS[stage]), None)


def _must_exist(path: Path, stage: Stage, source: str) -> Path:
    if not path.exists():
        raise ConfigError(
            f"stage {stage.value} starts from {source} at {path}, which does not exist; "
            f"run that stage first or point {stage.section}.init / ode.pairs at an existing file"
        )
    return path


def _init(config: RunConfig, stage: Stage) -> Path | None:
    """The weights ``stage`` starts from (see module doc); None = the base model."""
    explicit = getattr(config, stage.section).init
    if explicit:
        return Path(explicit)
    ar_pairs = stage is Stage.ODE_PAIRS and config.ode_pairs.teacher is PairTeacher.AR
    prev = None if stage is Stage.ODE_PAIRS and not ar_pairs else _previous(config, stage)
    if ar_pairs and prev is None:
        raise ConfigError(
            "ode_pairs.teacher=ar needs an AR teacher: this recipe has no ar-diffusion stage, "
            "so set ode_pairs.init to the AR teacher's weights"
        )
    if stage is Stage.CD and prev is None:
        raise ConfigError("cd distils along an AR teacher's PF-ODE: set cd.init or use a recipe with ar-diffusion")
    return final_weights(config, prev) if prev else None


def stage_inputs(config: RunConfig, stage: Stage, check: bool = True) -> StageInputs:
    """Resolve the inputs of ``stage`` (see module doc); with ``check`` a missing file is a clear error."""
    init = _init(config, stage)
    pairs = None
    if stage is Stage.ODE:
        pairs = Path(config.ode.pairs) if config.ode.pairs else stage_dir(config, Stage.ODE_PAIRS)
        if check:
            _must_exist(pairs / "index.json", stage, "the ODE-pair set")
    if check and init is not None:
        _must_exist(init, stage, "the weights")
    return StageInputs(init=init, pairs=pairs)
