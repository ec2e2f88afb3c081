"""full.config.layers: defaults → recipe → preset → file → overrides, and the resolved configuration on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from cf_ref.recipes import GeneratorInput, PairTeacher, Recipe
from full.config import ConfigError, build_config, load_config, save_config

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
    assert load_config(tmp_path / "config.yaml") == c


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
