r"""The recipe vocabulary both tracks speak: which recipe, how its student is initialised, whose PF-ODE makes the
pairs, how the AR teacher sees its history, what the DMD generator conditions on.

Every recipe ends with asymmetric DMD on the same block-causal few-step generator; they differ in how that
generator is initialised and in what it conditions on during DMD:

=====================  ==============================================  =======================  ==================
recipe                 initialisation of the few-step causal student   ODE state index drawn    DMD generator input
=====================  ==============================================  =======================  ==================
causal-forcing         causal ODE distillation (teacher-forced AR      once per video           self rollout
                       teacher, clean data context)
causal-forcing-pp      causal consistency distillation along the AR    (no pairs)               self rollout
                       teacher's PF-ODE (Causal Forcing++)
self-forcing           bidirectional ODE distillation (base model)     once per block           self rollout
causvid                bidirectional ODE distillation (base model)     once per block           clean data context
ar-diffusion-init      the teacher-forced AR teacher itself, sampled   (no pairs)               self rollout
                       with few steps (an ablation, not published)
=====================  ==============================================  =======================  ==================

The ODE state index granularity follows the authors' code: Causal Forcing's causal ODE regression draws one
trajectory state per video (``uniform_timestep=True`` in ``model/ode_regression.py`` of thu-ml/Causal-Forcing),
Self Forcing's ``ode_regression`` one per block (guandeh17/Self-Forcing; CausVid is trained by the same code).

The toy track (:mod:`toy.pipeline`) and the full track (:mod:`full.recipes`) read :data:`RECIPES`; each keeps
only how it runs a stage.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cf_ref.granularity import Granularity


class Recipe(enum.Enum):
    """The distillation recipes of the field (see module doc)."""

    CAUSAL_FORCING = "causal-forcing"
    CAUSAL_FORCING_PP = "causal-forcing-pp"
    SELF_FORCING = "self-forcing"
    CAUSVID = "causvid"
    AR_DIFFUSION_INIT = "ar-diffusion-init"


class Forcing(enum.Enum):
    """How the AR diffusion teacher sees its history while it trains."""

    TEACHER = "teacher"  # clean ground-truth history, [clean ; noisy] teacher-forcing layout (the paper's teacher)
    DIFFUSION = "diffusion"  # diffusion forcing: history noised with its own per-block level (the ablation)


class PairTeacher(enum.Enum):
    """Whose PF-ODE the ODE-distillation pairs follow (the two routes of the injectivity argument)."""

    AR = "ar"  # the AR teacher under clean data context: per-block flow maps, frame-level injective (Causal Forcing)
    BIDIRECTIONAL = "bidirectional"  # the bidirectional model's joint PF-ODE from noise (CausVid / Self Forcing)


class Init(enum.Enum):
    """How the few-step causal student is initialised before DMD (stage 3)."""

    CAUSAL_ODE = "causal-ode"  # ODE regression on the AR teacher's PF-ODE with clean data context
    CAUSAL_CD = "causal-cd"  # consistency distillation along the AR teacher's PF-ODE (EMA target)
    BIDIRECTIONAL_ODE = "bidirectional-ode"  # ODE regression on the bidirectional model's joint PF-ODE
    AR_DIFFUSION = "ar-diffusion"  # the multi-step AR teacher itself

    @property
    def needs_ar_teacher(self) -> bool:
        """Whether the recipe trains the teacher-forced AR teacher first (stage 1 of Causal Forcing)."""
        return self is not Init.BIDIRECTIONAL_ODE

    @property
    def pair_teacher(self) -> PairTeacher | None:
        """Whose PF-ODE makes the ODE pairs; None for the initialisations that use no stored pairs."""
        return {Init.CAUSAL_ODE: PairTeacher.AR, Init.BIDIRECTIONAL_ODE: PairTeacher.BIDIRECTIONAL}.get(self)


class GeneratorInput(enum.Enum):
    """What the DMD generator conditions on while it makes its training samples (stage 4)."""

    SELF_ROLLOUT = "self"  # Self Forcing: AR rollout on its own outputs with its cache, gradient through one step
    DATA_CONTEXT = "data"  # CausVid: one step from noised data, teacher-forced on the clean data of earlier blocks


@dataclass(frozen=True)
class RecipeSpec:
    """One recipe's fixed choices (see the module table)."""

    init: Init
    generator_input: GeneratorInput
    state_granularity: Granularity  # ODE regression: one trajectory state per video (SAMPLE) or per block (BLOCK)
    summary: str

    @property
    def pair_teacher(self) -> PairTeacher | None:
        return self.init.pair_teacher


RECIPES: dict[Recipe, RecipeSpec] = {
    Recipe.CAUSAL_FORCING: RecipeSpec(
        Init.CAUSAL_ODE,
        GeneratorInput.SELF_ROLLOUT,
        Granularity.SAMPLE,
        "AR teacher by teacher forcing → causal ODE pairs → ODE regression → asymmetric DMD (self rollout)",
    ),
    Recipe.CAUSAL_FORCING_PP: RecipeSpec(
        Init.CAUSAL_CD,
        GeneratorInput.SELF_ROLLOUT,
        Granularity.SAMPLE,
        "AR teacher by teacher forcing → causal consistency distillation → asymmetric DMD (self rollout)",
    ),
    Recipe.SELF_FORCING: RecipeSpec(
        Init.BIDIRECTIONAL_ODE,
        GeneratorInput.SELF_ROLLOUT,
        Granularity.BLOCK,
        "bidirectional ODE pairs → ODE regression → asymmetric DMD (self rollout)",
    ),
    Recipe.CAUSVID: RecipeSpec(
        Init.BIDIRECTIONAL_ODE,
        GeneratorInput.DATA_CONTEXT,
        Granularity.BLOCK,
        "bidirectional ODE pairs → ODE regression → asymmetric DMD on clean data context (no self rollout)",
    ),
    Recipe.AR_DIFFUSION_INIT: RecipeSpec(
        Init.AR_DIFFUSION,
        GeneratorInput.SELF_ROLLOUT,
        Granularity.SAMPLE,
        "AR teacher by teacher forcing, used as the few-step student → asymmetric DMD (self rollout); an ablation",
    ),
}
"""Every recipe's :class:`RecipeSpec`."""
