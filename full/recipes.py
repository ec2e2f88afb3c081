"""The full track's stages and the chain each recipe runs, read off the shared recipe table.

The recipes, their initialisation, ODE-state granularity and DMD generator input are defined once, in
:data:`cf_ref.recipes.RECIPES`; this module only says which full-track stages realise an initialisation
(:data:`INIT_STAGES`) and which configuration layer a recipe contributes (:func:`recipe_settings`):

=================== ============================================== ==========================================
recipe              stages                                         options the recipe fixes
=================== ============================================== ==========================================
causal-forcing      ar-diffusion → ode-pairs → ode → dmd           pairs from the AR teacher (clean context),
                                                                   one ODE state per video; self rollout
causal-forcing-pp   ar-diffusion → cd → dmd                        CD along the AR teacher's PF-ODE; self rollout
self-forcing        ode-pairs → ode → dmd                          pairs from the bidirectional model, one ODE
                                                                   state per block; self rollout
causvid             ode-pairs → ode → dmd                          bidirectional pairs, one ODE state per block;
                                                                   DMD generator on clean data context
ar-diffusion-init   ar-diffusion → dmd                             the AR teacher is the DMD generator's start
                                                                   (an ablation); self rollout
=================== ============================================== ==========================================

Which output feeds which stage is :mod:`full.stage_inputs`.
"""

from __future__ import annotations

import enum
from typing import Any

from cf_ref.recipes import RECIPES, Init, Recipe


class Stage(enum.Enum):
    """The stages of the full track, in pipeline order."""

    AR_DIFFUSION = "ar-diffusion"  # AR teacher from the bidirectional model by teacher forcing
    ODE_PAIRS = "ode-pairs"  # PF-ODE trajectories (AR teacher with clean context, or bidirectional baseline)
    ODE = "ode"  # ODE regression of the few-step causal student on the pairs
    CD = "cd"  # causal consistency distillation along the AR teacher's PF-ODE (Causal Forcing++)
    DMD = "dmd"  # asymmetric DMD with self-forcing rollout (or CausVid's data context)

    @property
    def section(self) -> str:
        """The stage's section of :class:`full.config.RunConfig` (``ode-pairs`` → ``ode_pairs``)."""
        return self.value.replace("-", "_")


INIT_STAGES: dict[Init, tuple[Stage, ...]] = {
    Init.CAUSAL_ODE: (Stage.AR_DIFFUSION, Stage.ODE_PAIRS, Stage.ODE),
    Init.CAUSAL_CD: (Stage.AR_DIFFUSION, Stage.CD),
    Init.BIDIRECTIONAL_ODE: (Stage.ODE_PAIRS, Stage.ODE),
    Init.AR_DIFFUSION: (Stage.AR_DIFFUSION,),
}
"""The stages that initialise the few-step student, per initialisation; every recipe then runs ``dmd``."""


def recipe_stages(recipe: Recipe) -> tuple[Stage, ...]:
    """The stage chain of ``recipe``, in order (see the module table)."""
    return (*INIT_STAGES[RECIPES[recipe].init], Stage.DMD)


def recipe_settings(recipe: Recipe) -> dict[str, Any]:
    """The configuration layer ``recipe`` contributes (applied before preset, file and overrides, see
    :func:`full.config.build_config`): whose PF-ODE makes the pairs, how the ODE state index is drawn, what the
    DMD generator conditions on — each from the recipe's :class:`cf_ref.recipes.RecipeSpec`."""
    spec = RECIPES[recipe]
    layer: dict[str, Any] = {"recipe": recipe.value, "dmd": {"generator_input": spec.generator_input.value}}
    if spec.pair_teacher is not None:
        layer["ode_pairs"] = {"teacher": spec.pair_teacher.value}
    if Stage.ODE in INIT_STAGES[spec.init]:
        layer["ode"] = {"index_granularity": spec.state_granularity.value}
    return layer
