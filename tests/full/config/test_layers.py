"""full.config.layers: defaults → recipe → preset → file → overrides, and the resolved configuration on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from cf_ref.recipes import GeneratorInput, PairTeacher, Recipe
from full.config import ConfigError, absolute_paths, build_config, load_config, save_config

ROOT = Path(__file__).resolve().parents[3]


def test_later_layers_win(tmp_path):
    (tmp_path / "run.yaml").write_text("recipe: causvid\nseed: 5\ndmd:\n  guidance_scale: 4.5\n  loop: {steps: 7}\n")
    c = build_config(tmp_path / "run.yaml", ["dmd.loop.steps=9"], preset="tiny")
    assert c.recipe is Recipe.CAUSVID and c.seed == 5  # the file
    assert c.dmd.generator_input is GeneratorInput.DATA_CONTEXT  # the recipe named in the file
    assert c.dmd.guidance_scale == 4.5 and c.dmd.loop.steps == 9  # preset < file < override
    assert c.model.block_size == 2  # the preset
    # the recipe argument (--recipe) beats the file; a user setting beats the recipe's
    c = build_config(tmp_path / "run.yaml", ["ode_pairs.teacher=ar"], preset="tiny", recipe=Recipe.SELF_FORCING)
    assert c.recipe is Recipe.SELF_FORCING and c.ode_pairs.teacher is PairTeacher.AR


def test_resolved_config_round_trips(tmp_path):
    c = build_config(preset="tiny", recipe="causvid", overrides=["dmd.guidance_scale=2.5", "data.prompts=p"])
    save_config(c, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == absolute_paths(c)  # paths come back absolute


def test_run_paths_are_stored_relative_to_the_run_so_a_moved_run_loads(tmp_path):
    """Paths inside the run folder are stored relative to it, others absolute: moving the folder moves them."""
    run = tmp_path / "run"
    c = build_config(
        preset="tiny", out=str(run), overrides=[f"data.latents={run}/data/latents", f"data.prompts={tmp_path}/p"]
    )
    save_config(c, run / "config.yaml")
    text = (run / "config.yaml").read_text()
    assert "out: .\n" in text and "latents: data/latents\n" in text and f"prompts: {tmp_path}/p\n" in text
    (run).rename(tmp_path / "moved")
    moved = load_config(tmp_path / "moved" / "config.yaml")
    assert moved.out == str(tmp_path / "moved") and moved.data.latents == str(tmp_path / "moved" / "data" / "latents")
    assert moved.data.prompts == str(tmp_path / "p")
    # given as --config from anywhere, the saved file still means the moved folder
    assert build_config(tmp_path / "moved" / "config.yaml").out == str(tmp_path / "moved")


def test_unknown_preset_and_recipe_are_clear():
    with pytest.raises(ConfigError, match="unknown preset"):
        build_config(preset="huge")
    with pytest.raises(ConfigError, match="recipe: 'fast' is not one of"):
        build_config(preset="tiny", recipe="fast")


def test_example_configs_validate():
    files = sorted((ROOT / "configs" / "full").glob("*.yaml"))
    assert files
    for f in files:
        config = build_config(f)
        assert config.model.path and config.data.latents and config.data.prompts


def test_a_refused_schedule_is_reported_with_every_other_problem():
    with pytest.raises(ConfigError) as info:
        build_config(preset="tiny", overrides=["schedule.timesteps=[500, 1000]", "seed=-1", "dmd.t_min=990"])
    lines = str(info.value).splitlines()[1:]
    assert len(lines) == 3 and "schedule: timesteps must be strictly decreasing" in lines[0]
