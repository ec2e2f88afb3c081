"""full.preflight: what the unfinished stages will read is checked before the first step, every problem at once."""

from __future__ import annotations

import json

import pytest

from full.config import ConfigError, build_config
from full.preflight import check_run_inputs
from full.recipes import Stage, recipe_stages
from full.synthetic import SyntheticSpec, write_synthetic_latents
from full.tiny import TINY, tiny_transformer

SMALL = ["model.tiny_base.steps=0", "logging.progress=false"]


def _problems(config, chain=None, finished=()) -> list[str]:
    try:
        check_run_inputs(config, chain or recipe_stages(config.recipe), set(finished))
    except ConfigError as exc:
        return [line[4:] for line in str(exc).splitlines()[1:]]
    return []


def test_a_fresh_tiny_run_needs_nothing_that_is_missing(tmp_path):
    """Every stage's input is made by an earlier stage of the same invocation (or by the preset)."""
    assert _problems(build_config(preset="tiny", out=str(tmp_path), overrides=SMALL)) == []


def test_a_stage_run_alone_needs_its_inputs_on_disk(tmp_path):
    config = build_config(preset="tiny", out=str(tmp_path), overrides=SMALL)
    problems = _problems(config, chain=[Stage.ODE])
    assert len(problems) == 2
    assert "starts from an earlier stage" in problems[0] and "ar-diffusion/final/model.safetensors" in problems[0]
    assert "ode-pairs is not a prepared set" in problems[1]
    # finished stages are not checked again, nor what they read
    assert _problems(config, chain=[Stage.ODE], finished=[Stage.ODE]) == []


def test_data_sets_must_fit_the_model_and_the_video(tmp_path):
    wrong = write_synthetic_latents(tmp_path / "wrong", SyntheticSpec(count=2, frames=6, text_dim=TINY.text_dim + 1))
    config = build_config(preset="tiny", out=str(tmp_path / "run"), overrides=[*SMALL, f"data.latents={wrong}"])
    problems = _problems(config)
    assert len(problems) == 2
    assert f"data.latents: {wrong} has text width {TINY.text_dim + 1}, the model {TINY.text_dim}" == problems[0]
    assert "holds latents [F, C, H, W] = [6, 4, 8, 8], the run expects [4, 4, 8, 8]" in problems[1]


def test_a_real_score_of_another_model_is_refused(tmp_path):
    other = tiny_transformer(seed=0)
    other.save_pretrained(tmp_path / "real")
    config_json = json.loads((tmp_path / "real" / "config.json").read_text())
    (tmp_path / "real" / "config.json").write_text(json.dumps({**config_json, "text_dim": 64}))
    overrides = [*SMALL, f"dmd.real_score_path={tmp_path / 'real'}"]
    problems = _problems(build_config(preset="tiny", out=str(tmp_path / "run"), overrides=overrides))
    assert problems == [f"dmd.real_score_path: the real score has text_dim=64, the base {TINY.text_dim}"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ar_diffusion.init=/nowhere/w.safetensors", "ar_diffusion.init: no weights file at /nowhere/w.safetensors"),
        ("logging.vae=/nowhere", "logging.vae: /nowhere does not exist"),
        ("data.prompts=/nowhere", "data.prompts: /nowhere is not a prepared set"),
        ("ode.pairs=/nowhere", "/nowhere is not a prepared set"),
    ],
)
def test_each_path_setting_is_checked(tmp_path, override, message):
    problems = _problems(build_config(preset="tiny", out=str(tmp_path), overrides=[*SMALL, override]))
    assert len(problems) == 1 and message in problems[0], problems
