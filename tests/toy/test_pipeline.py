"""Recipe chains, stage sharing and reproducibility (toy/recipes.py, toy/pipeline.py) and the comparison outputs
(toy/compare.py) on a tiny configuration."""

import json

import pytest

from toy.compare import mean_std, redraw, run_compare, run_pipeline
from toy.experiment import DatasetKind, DatasetSpec
from toy.pipeline import SeedRun, recipe_stage_keys
from toy.recipes import (
    RECIPES,
    BudgetConfig,
    DMDConfig,
    EvalConfig,
    GeneratorInput,
    Init,
    NetworkConfig,
    PipelineConfig,
    Recipe,
    ScheduleConfig,
)

TINY = PipelineConfig(
    dataset=DatasetSpec(DatasetKind.SHARED_MODE_MIXTURE, dim=2, num_modes=2),
    num_frames=2,
    network=NetworkConfig(hidden=16, depth=2),
    schedule=ScheduleConfig(ode_steps=8),
    budget=BudgetConfig(batch_size=32, base_steps=8, teacher_steps=8, init_steps=6, dmd_steps=4, num_pairs=64),
    dmd=DMDConfig(critic_ratio=2, eval_every=2),
    eval=EvalConfig(num_samples=64, curve_samples=32, velocity_samples=64),
)


def test_recipe_table():
    assert set(RECIPES) == set(Recipe)
    assert RECIPES[Recipe.CAUSVID].generator_input is GeneratorInput.DATA_CONTEXT
    assert all(RECIPES[r].generator_input is GeneratorInput.SELF_ROLLOUT for r in Recipe if r is not Recipe.CAUSVID)
    for recipe in Recipe:
        keys = recipe_stage_keys(recipe)
        assert ("ar_teacher" in keys) == RECIPES[recipe].init.needs_ar_teacher
    assert not Init.BIDIRECTIONAL_ODE.needs_ar_teacher


def test_schedule_rejects_incompatible_grid():
    with pytest.raises(ValueError, match="multiple of student_steps"):
        ScheduleConfig(ode_steps=10, student_steps=4)


def test_shared_stages_run_once_and_recipes_reproduce_alone():
    """Two recipes on one seed share the base model and the TF teacher; a recipe run alone gives the same numbers."""
    run = SeedRun(TINY, 0)
    first = run.run(Recipe.CAUSAL_FORCING)
    teacher = run._nets["ar_teacher/teacher_forcing"]
    second = run.run(Recipe.CAUSAL_FORCING_PP)
    assert run._nets["ar_teacher/teacher_forcing"] is teacher
    assert first["base"] is second["base"] and first["ar_teacher"] is second["ar_teacher"]
    assert set(run.records) == {
        "base", "ar_teacher/teacher_forcing", "init/causal_ode", "init/causal_cd",
        "dmd/causal-forcing", "dmd/causal-forcing-pp",
    }  # fmt: skip
    alone = SeedRun(TINY, 0).run(Recipe.CAUSAL_FORCING_PP)
    assert alone["dmd"]["samples"] == second["dmd"]["samples"]
    assert alone["dmd"]["curve"] == second["dmd"]["curve"]
    assert [p["step"] for p in alone["dmd"]["curve"]] == [0, 2, 4]
    other_seed = SeedRun(TINY, 1).run(Recipe.CAUSAL_FORCING_PP)
    assert other_seed["dmd"]["samples"] != second["dmd"]["samples"]


def test_compare_writes_json_table_and_figures(tmp_path):
    recipes = (Recipe.SELF_FORCING, Recipe.CAUSVID)
    result = run_compare(TINY, [0, 1], tmp_path, recipes=recipes)
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert saved["seeds"] == [0, 1] and set(saved["recipes"]) == {r.value for r in recipes}
    summary = saved["recipes"]["causvid"]["summary"]["final"]["energy_distance"]
    per_seed = [saved["recipes"]["causvid"]["per_seed"][s]["dmd"]["samples"]["energy_distance"] for s in ("0", "1")]
    assert summary["values"] == pytest.approx(per_seed) and summary["mean"] == pytest.approx(sum(per_seed) / 2)
    assert set(saved["teachers"]) == {"teacher_forcing", "diffusion_forcing"}
    assert len(saved["energy_noise_floor"]["values"]) == 2 * TINY.eval.noise_draws
    table = (tmp_path / "compare.md").read_text()
    assert "| self-forcing |" in table and "| causvid |" in table and "±" in table
    for stem in ("samples_init", "samples_dmd", "teachers", "dmd_curves"):
        assert (tmp_path / f"{stem}.png").stat().st_size > 0 and (tmp_path / f"{stem}.pdf").exists()
    assert (tmp_path / "samples.safetensors").exists()
    assert result["recipes"]["self-forcing"]["summary"]["seconds"]["total"]["mean"] > 0
    for stem in ("samples_init", "samples_dmd", "teachers", "dmd_curves"):
        (tmp_path / f"{stem}.png").unlink()
    (tmp_path / "compare.md").unlink()
    redraw(tmp_path)  # from compare.json and samples.safetensors alone
    assert (tmp_path / "compare.md").read_text() == table
    assert all(
        (tmp_path / f"{stem}.png").exists() for stem in ("samples_init", "samples_dmd", "teachers", "dmd_curves")
    )


def test_mean_std():
    stat = mean_std([1.0, 2.0, 3.0])
    assert stat["mean"] == 2.0 and stat["std"] == pytest.approx(1.0)
    assert mean_std([5.0])["std"] == 0.0


def test_run_pipeline_writes_one_recipe(tmp_path):
    result = run_pipeline(TINY, Recipe.AR_DIFFUSION_INIT, 0, tmp_path)
    saved = json.loads((tmp_path / "pipeline.json").read_text())
    assert saved["recipe"] == "ar-diffusion-init" and saved["chain"] == {
        "init": "ar_diffusion",
        "generator_input": "self_rollout",
    }
    assert set(saved["stages"]) == {"base", "ar_teacher", "init", "dmd"} and saved["stages"]["init"]["seconds"] == 0.0
    assert saved["stages"]["dmd"]["samples"] == result["stages"]["dmd"]["samples"]
    assert (tmp_path / "samples.png").exists() and (tmp_path / "dmd_curve.pdf").exists()
