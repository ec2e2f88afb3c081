"""toy.compare: the comparison's files on a tiny configuration (the JSON against its per-seed records, the table and
figures) and redrawing them from the files alone; one recipe's pipeline files."""

import json

import pytest

from cf_ref.recipes import Recipe
from tests.toy.pipeline_configs import TINY
from toy.compare import redraw, run_compare, run_pipeline

FIGURES = ("samples_init", "samples_dmd", "teachers", "dmd_curves")


def test_compare_writes_json_table_and_figures_and_redraws_them(tmp_path):
    recipes = (Recipe.SELF_FORCING, Recipe.CAUSVID)
    result = run_compare(TINY, [0, 1], tmp_path, recipes=recipes)
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert saved["seeds"] == [0, 1] and set(saved["recipes"]) == {r.value for r in recipes}
    assert saved["recipes"]["causvid"]["chain"]["generator_input"] == "data"
    summary = saved["recipes"]["causvid"]["summary"]["final"]["energy_distance"]
    per_seed = [saved["recipes"]["causvid"]["per_seed"][s]["dmd"]["samples"]["energy_distance"] for s in ("0", "1")]
    assert summary["values"] == pytest.approx(per_seed) and summary["mean"] == pytest.approx(sum(per_seed) / 2)
    assert set(saved["teachers"]) == {"teacher", "diffusion"}
    assert len(saved["energy_noise_floor"]["values"]) == 2 * TINY.eval.noise_draws
    table = (tmp_path / "compare.md").read_text()
    assert "| self-forcing |" in table and "| causvid |" in table and "| teacher forcing |" in table and "±" in table
    assert all(
        (tmp_path / f"{stem}.png").stat().st_size > 0 and (tmp_path / f"{stem}.pdf").exists() for stem in FIGURES
    )
    assert result["recipes"]["self-forcing"]["summary"]["seconds"]["total"]["mean"] > 0
    for stem in FIGURES:
        (tmp_path / f"{stem}.png").unlink()
    (tmp_path / "compare.md").unlink()
    redraw(tmp_path)  # from compare.json and samples.safetensors alone
    assert (tmp_path / "compare.md").read_text() == table
    assert all((tmp_path / f"{stem}.png").exists() for stem in FIGURES)


def test_run_pipeline_writes_one_recipe(tmp_path):
    result = run_pipeline(TINY, Recipe.AR_DIFFUSION_INIT, 0, tmp_path)
    saved = json.loads((tmp_path / "pipeline.json").read_text())
    assert saved["recipe"] == "ar-diffusion-init" and saved["chain"]["init"] == "ar-diffusion"
    assert set(saved["stages"]) == {"base", "ar_teacher", "init", "dmd"} and saved["stages"]["init"]["seconds"] == 0.0
    assert saved["stages"]["dmd"]["samples"] == result["stages"]["dmd"]["samples"]
    assert (tmp_path / "samples.png").exists() and (tmp_path / "dmd_curve.pdf").exists()
