"""full.recipes: the stage chains and configuration layers read off the shared recipe table (cf_ref.recipes)."""

from __future__ import annotations

import pytest

from cf_ref.granularity import Granularity
from cf_ref.recipes import RECIPES, GeneratorInput, Init, PairTeacher, Recipe
from full.config import build_config
from full.recipes import Stage, recipe_stages


def test_published_chains():
    assert recipe_stages(Recipe.CAUSAL_FORCING) == (Stage.AR_DIFFUSION, Stage.ODE_PAIRS, Stage.ODE, Stage.DMD)
    assert recipe_stages(Recipe.CAUSAL_FORCING_PP) == (Stage.AR_DIFFUSION, Stage.CD, Stage.DMD)
    assert recipe_stages(Recipe.SELF_FORCING) == (Stage.ODE_PAIRS, Stage.ODE, Stage.DMD)
    assert recipe_stages(Recipe.CAUSVID) == (Stage.ODE_PAIRS, Stage.ODE, Stage.DMD)
    assert recipe_stages(Recipe.AR_DIFFUSION_INIT) == (Stage.AR_DIFFUSION, Stage.DMD)


@pytest.mark.parametrize("recipe", list(Recipe))
def test_every_chain_is_in_pipeline_order_and_ends_with_dmd(recipe):
    chain = recipe_stages(recipe)
    order = list(Stage)
    assert chain[-1] is Stage.DMD and list(chain) == sorted(chain, key=order.index)
    spec = RECIPES[recipe]
    assert (Stage.AR_DIFFUSION in chain) == spec.init.needs_ar_teacher  # the AR teacher is trained iff needed
    assert (Stage.ODE_PAIRS in chain) == (spec.pair_teacher is not None)  # stored pairs iff a pair teacher
    assert (Stage.CD in chain) == (spec.init is Init.CAUSAL_CD)


@pytest.mark.parametrize("recipe", list(Recipe))
def test_recipe_layer_sets_the_recipes_choices(recipe):
    spec = RECIPES[recipe]
    c = build_config(preset="tiny", recipe=recipe)
    assert c.recipe is recipe and c.dmd.generator_input is spec.generator_input
    if spec.pair_teacher is not None:
        assert c.ode_pairs.teacher is spec.pair_teacher
        assert c.ode.index_granularity is spec.state_granularity


def test_the_published_and_baseline_choices():
    """Causal Forcing: AR-teacher pairs, one ODE state per video (``uniform_timestep=True`` in the authors'
    ode_regression); Self Forcing / CausVid: bidirectional pairs, one state per block; CausVid's generator
    conditions on data."""
    cf, sf, cv = (build_config(preset="tiny", recipe=r) for r in ("causal-forcing", "self-forcing", "causvid"))
    assert (cf.ode_pairs.teacher, cf.ode.index_granularity) == (PairTeacher.AR, Granularity.SAMPLE)
    assert (sf.ode_pairs.teacher, sf.ode.index_granularity) == (PairTeacher.BIDIRECTIONAL, Granularity.BLOCK)
    assert (cv.dmd.generator_input, sf.dmd.generator_input) == (
        GeneratorInput.DATA_CONTEXT,
        GeneratorInput.SELF_ROLLOUT,
    )
    # a user setting still wins over the recipe's (the baseline flag --teacher bidirectional)
    c = build_config(preset="tiny", overrides=["ode_pairs.teacher=bidirectional", "ode.index_granularity=block"])
    assert c.recipe is Recipe.CAUSAL_FORCING and c.ode_pairs.teacher is PairTeacher.BIDIRECTIONAL
    assert c.ode.index_granularity is Granularity.BLOCK


def test_stage_sections():
    config = build_config(preset="tiny")
    for stage in Stage:
        assert hasattr(config, stage.section), stage
