import pytest

from cf_ref.granularity import Granularity
from cf_ref.recipes import RECIPES, GeneratorInput, Init, PairTeacher, Recipe


def test_every_recipe_has_one_spec():
    assert set(RECIPES) == set(Recipe)


@pytest.mark.parametrize("recipe", list(Recipe))
def test_a_recipe_uses_stored_pairs_exactly_when_its_init_is_ode_regression(recipe):
    spec = RECIPES[recipe]
    assert (spec.pair_teacher is not None) == (spec.init in (Init.CAUSAL_ODE, Init.BIDIRECTIONAL_ODE))
    # pairs from the AR teacher are the only ones needing the teacher-forced AR teacher among ODE inits
    if spec.pair_teacher is PairTeacher.AR:
        assert spec.init.needs_ar_teacher
    if spec.pair_teacher is PairTeacher.BIDIRECTIONAL:
        assert not spec.init.needs_ar_teacher


def test_the_published_choices():
    """What each recipe is in its authors' code (thu-ml/Causal-Forcing, guandeh17/Self-Forcing, CausVid)."""
    cf, sf, cv = RECIPES[Recipe.CAUSAL_FORCING], RECIPES[Recipe.SELF_FORCING], RECIPES[Recipe.CAUSVID]
    assert (cf.pair_teacher, cf.state_granularity, cf.generator_input) == (
        PairTeacher.AR,
        Granularity.SAMPLE,
        GeneratorInput.SELF_ROLLOUT,
    )
    assert (sf.pair_teacher, sf.state_granularity) == (PairTeacher.BIDIRECTIONAL, Granularity.BLOCK)
    assert cv.generator_input is GeneratorInput.DATA_CONTEXT
    assert RECIPES[Recipe.CAUSAL_FORCING_PP].init is Init.CAUSAL_CD


def test_enum_values_are_the_command_line_spellings():
    assert [r.value for r in Recipe] == [
        "causal-forcing",
        "causal-forcing-pp",
        "self-forcing",
        "causvid",
        "ar-diffusion-init",
    ]
    assert (
        GeneratorInput("self") is GeneratorInput.SELF_ROLLOUT and GeneratorInput("data") is GeneratorInput.DATA_CONTEXT
    )
