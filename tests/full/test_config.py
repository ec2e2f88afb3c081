"""full.config / full.recipes: published defaults, layering, file formats, overrides, clear errors."""

from __future__ import annotations

import pytest

from cf_ref.schedule import Granularity, LossWeighting
from full.config import (
    ConfigError,
    Forcing,
    GeneratorRollout,
    PairTeacher,
    Parallelism,
    Precision,
    Recipe,
    RunConfig,
    Stage,
    build_config,
    load_config,
    parse_override,
    save_config,
)
from full.recipes import RECIPES, final_weights, stage_inputs


def test_defaults_are_the_published_setting():
    c = RunConfig()
    assert c.model.shift == 5.0 and c.model.block_size == 3
    assert c.model.few_step_timesteps == (1000.0, 750.0, 500.0, 250.0)
    assert (c.video.latent_frames, c.video.latent_height, c.video.latent_width) == (21, 60, 104)
    assert c.ar_diffusion.forcing is Forcing.TEACHER and c.ar_diffusion.granularity is Granularity.BLOCK
    assert c.ar_diffusion.weighting is LossWeighting.BELL
    assert c.ode_pairs.teacher is PairTeacher.AR
    assert (c.ode_pairs.num_steps, c.ode_pairs.guidance_scale) == (48, 6.0)
    assert (c.cd.num_steps, c.cd.guidance_scale, c.cd.ema_decay) == (48, 3.0, 0.99)
    d = c.dmd
    assert (d.guidance_scale, d.critic_updates_per_generator, d.t_min, d.t_max) == (4.0, 5, 20.0, 980.0)
    assert (d.optim.lr, d.critic_optim.lr, d.optim.betas, d.ema_decay, d.ema_start) == (
        2e-6,
        4e-7,
        (0.0, 0.999),
        0.99,
        200,
    )
    assert d.rollout is GeneratorRollout.SELF and d.same_exit_across_blocks
    assert c.ode.optim.betas == (0.9, 0.999)
    assert c.parallel.precision is Precision.BF16 and c.parallel.gradient_checkpointing
    assert c.parallel.strategy is Parallelism.FSDP


def test_recipes_select_stage_chains_and_options():
    assert RECIPES[Recipe.CAUSAL_FORCING].stages == (Stage.AR_DIFFUSION, Stage.ODE_PAIRS, Stage.ODE, Stage.DMD)
    assert RECIPES[Recipe.CAUSAL_FORCING_PP].stages == (Stage.AR_DIFFUSION, Stage.CD, Stage.DMD)
    for recipe, teacher, rollout in [
        ("causal-forcing", PairTeacher.AR, GeneratorRollout.SELF),
        ("self-forcing", PairTeacher.BIDIRECTIONAL, GeneratorRollout.SELF),
        ("causvid", PairTeacher.BIDIRECTIONAL, GeneratorRollout.DATA),
    ]:
        c = build_config(preset="tiny", recipe=recipe)
        assert (c.ode_pairs.teacher, c.dmd.rollout) == (teacher, rollout)
    # a user setting beats the recipe's (the baseline flag --teacher bidirectional)
    c = build_config(preset="tiny", overrides=["ode_pairs.teacher=bidirectional"])
    assert c.recipe is Recipe.CAUSAL_FORCING and c.ode_pairs.teacher is PairTeacher.BIDIRECTIONAL


def test_stage_inputs_chain_outputs(tmp_path):
    c = build_config(preset="tiny", overrides=[f"out={tmp_path}"])
    assert stage_inputs(c, Stage.AR_DIFFUSION).init is None  # the base model
    assert stage_inputs(c, Stage.ODE_PAIRS, check=False).init == final_weights(c, Stage.AR_DIFFUSION)
    ode = stage_inputs(c, Stage.ODE, check=False)
    assert ode.init == final_weights(c, Stage.AR_DIFFUSION) and ode.pairs == tmp_path / "ode-pairs"
    assert stage_inputs(c, Stage.DMD, check=False).init == final_weights(c, Stage.ODE)
    pp = build_config(preset="tiny", recipe="causal-forcing-pp", overrides=[f"out={tmp_path}"])
    assert stage_inputs(pp, Stage.DMD, check=False).init == final_weights(pp, Stage.CD)
    sf = build_config(preset="tiny", recipe="self-forcing", overrides=[f"out={tmp_path}"])
    assert stage_inputs(sf, Stage.ODE, check=False).init is None  # self forcing: student from the base model
    with pytest.raises(ConfigError, match="run that stage first"):
        stage_inputs(c, Stage.ODE)


def test_yaml_and_toml_files_and_overrides(tmp_path):
    (tmp_path / "a.yaml").write_text("recipe: causal-forcing-pp\ndmd:\n  guidance_scale: 4.5\n  loop: {steps: 7}\n")
    (tmp_path / "a.toml").write_text(
        'recipe = "causal-forcing-pp"\n[dmd]\nguidance_scale = 4.5\n[dmd.loop]\nsteps = 7\n'
    )
    for name in ("a.yaml", "a.toml"):
        c = build_config(tmp_path / name, ["dmd.loop.steps=9", "model.few_step_timesteps=[1000, 500]"], preset="tiny")
        assert c.recipe is Recipe.CAUSAL_FORCING_PP and c.dmd.guidance_scale == 4.5 and c.dmd.loop.steps == 9
        assert c.model.few_step_timesteps == (1000.0, 500.0)
    assert parse_override("dmd.rollout=data") == {"dmd": {"rollout": "data"}}


def test_resolved_config_round_trips(tmp_path):
    c = build_config(preset="tiny", recipe="causvid", overrides=["dmd.guidance_scale=2.5", "data.prompts=p"])
    save_config(c, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == c


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dmd.guidanse_scale=1"], "did you mean 'guidance_scale'"),
        (["dmd.rollout=sideways"], "'sideways' is not one of 'self', 'data'"),
        (["dmd.loop.steps=many"], "dmd.loop.steps: expected an integer"),
        (["model.block_size=3"], "block_size 3 does not divide video.latent_frames 4"),
        (["ode_pairs.num_steps=10"], "not on the 10-step teacher grid"),
        (["dmd.t_min=990"], "need 0 <= t_min < t_max <= 1000"),
        (["cd.ema_decay=1.5"], "cd.ema_decay must lie in [0, 1]"),
        (["dmd.critic_updates_per_generator=0"], "critic_updates_per_generator must be >= 1"),
        (["model.path=/x"], "give exactly one of model.path"),
        (["nonsense"], "must look like section.key=value"),
    ],
)
def test_config_errors_are_clear(overrides, message):
    with pytest.raises(ConfigError) as info:
        build_config(preset="tiny", overrides=overrides)
    assert message in str(info.value)


def test_all_problems_reported_at_once_and_bad_files(tmp_path):
    with pytest.raises(ConfigError) as info:
        build_config(preset="tiny", overrides=["ode.loop.steps=0", "dmd.t_min=990", "ar_diffusion.optim.lr=-1"])
    text = str(info.value)
    assert "ode.loop.steps" in text and "t_min" in text and "ar_diffusion.optim.lr" in text
    (tmp_path / "bad.yaml").write_text("dmd: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_config(tmp_path / "bad.yaml", preset="tiny")
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(ConfigError, match="expected a .yaml, .yml or .toml"):
        build_config(tmp_path / "c.json", preset="tiny")
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(tmp_path / "missing.yaml", preset="tiny")
    with pytest.raises(ConfigError, match="unknown preset"):
        build_config(preset="huge")


def test_example_configs_validate():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[2] / "configs" / "full").glob("*.yaml"))
    assert files
    for f in files:
        config = build_config(f)
        assert config.model.path and config.data.latents and config.data.prompts
