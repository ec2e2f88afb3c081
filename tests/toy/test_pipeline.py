"""toy.pipeline: recipe chains from cf_ref.recipes, stage sharing and reproducibility on a tiny configuration."""

import pytest

from cf_ref.granularity import Granularity
from cf_ref.recipes import RECIPES, Init, Recipe
from tests.toy.pipeline_configs import TINY
from toy.pipeline import SeedRun, recipe_stage_keys


def test_recipes_sharing_an_initialisation_agree_on_its_state_granularity():
    """SeedRun memoises an initialisation by its kind, so recipes that share one must train it identically."""
    for init in Init:
        assert len({spec.state_granularity for spec in RECIPES.values() if spec.init is init}) <= 1, init


def test_stage_keys_follow_the_recipe_table():
    assert recipe_stage_keys(Recipe.CAUSVID) == {"base": "base", "init": "init/bidirectional-ode", "dmd": "dmd/causvid"}
    assert recipe_stage_keys(Recipe.CAUSAL_FORCING_PP)["ar_teacher"] == "ar_teacher/teacher"


def test_shared_stages_run_once_and_recipes_reproduce_alone():
    """Two recipes on one seed share the base model and the TF teacher; a recipe run alone gives the same numbers."""
    run = SeedRun(TINY, 0)
    first = run.run(Recipe.CAUSAL_FORCING)
    teacher = run._nets["ar_teacher/teacher"]
    second = run.run(Recipe.CAUSAL_FORCING_PP)
    assert run._nets["ar_teacher/teacher"] is teacher
    assert first["base"] is second["base"] and first["ar_teacher"] is second["ar_teacher"]
    assert set(run.records) == {
        "base", "ar_teacher/teacher", "init/causal-ode", "init/causal-cd", "dmd/causal-forcing", "dmd/causal-forcing-pp",
    }  # fmt: skip
    alone = SeedRun(TINY, 0).run(Recipe.CAUSAL_FORCING_PP)
    assert alone["dmd"]["samples"] == second["dmd"]["samples"]
    assert alone["dmd"]["curve"] == second["dmd"]["curve"]
    assert [p["step"] for p in alone["dmd"]["curve"]] == [0, 2, 4]
    other_seed = SeedRun(TINY, 1).run(Recipe.CAUSAL_FORCING_PP)
    assert other_seed["dmd"]["samples"] != second["dmd"]["samples"]


@pytest.mark.parametrize("recipe", [Recipe.SELF_FORCING, Recipe.CAUSAL_FORCING])
def test_ode_initialisation_uses_the_recipes_state_granularity(recipe, monkeypatch):
    """The ODE initialisation draws its trajectory states per video or per block as RECIPES says."""
    import toy.pipeline

    seen = []
    real = toy.pipeline.distill_ode

    def spy(*args, **kwargs):
        seen.append(args[5] if len(args) > 5 else kwargs["state_granularity"])
        return real(*args, **kwargs)

    monkeypatch.setattr(toy.pipeline, "distill_ode", spy)
    SeedRun(TINY, 0).init(RECIPES[recipe])
    assert seen == [RECIPES[recipe].state_granularity]
    assert seen[0] is (Granularity.BLOCK if recipe is Recipe.SELF_FORCING else Granularity.SAMPLE)


def test_dmd_settings_carry_the_shared_budget_and_the_recipes_generator_input():
    run = SeedRun(TINY, 0)
    for recipe in (Recipe.CAUSVID, Recipe.SELF_FORCING):
        settings = run.dmd_settings(RECIPES[recipe])
        assert settings.generator_input is RECIPES[recipe].generator_input
        assert settings.critic_updates_per_generator == TINY.dmd.critic_updates_per_generator
        assert settings.critic_optim.steps == TINY.budget.dmd_steps * TINY.dmd.critic_updates_per_generator
        assert settings.shift == TINY.schedule.few_step.shift
