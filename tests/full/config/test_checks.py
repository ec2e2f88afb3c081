"""full.config.checks: cross-field validation reports every problem of a configuration at once."""

from __future__ import annotations

import dataclasses

import pytest

from cf_ref.ema import EmaFirstUpdate
from cf_ref.granularity import Granularity
from cf_ref.rollout import CacheGradient
from cf_ref.schedule import FewStepSchedule
from full.config import ConfigError, TimeDtype, build_config, validate


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.block_size=3"], "block_size 3 does not divide video.latent_frames 4"),
        (["schedule.ode_steps=10"], "is not on the 10-step grid"),
        (["schedule.ode_steps=1", "schedule.timesteps=[1000]"], "schedule.ode_steps must be >= 2"),
        (["dmd.t_min=990"], "need 0 <= t_min < t_max <= 1000"),
        (["cd.ema_decay=1.5"], "cd.ema_decay must lie in [0, 1]"),
        (["dmd.critic_updates_per_generator=0"], "critic_updates_per_generator must be >= 1"),
        (["model.path=/x"], "give exactly one of model.path"),
        (["ode.index_granularity=frame"], "ode.index_granularity 'frame' needs model.block_size 1"),
        (["ode_pairs.max_pairs=0"], "ode_pairs.max_pairs must be >= 1 or null"),
        (["dmd.score_shift=0"], "dmd.score_shift must be > 0 or null"),
        (["dmd.cache=paged"], "dmd.cache must be dynamic or static, got 'paged'"),
        (
            ["dmd.cache_gradient=published-leak", "dmd.generator_input=data"],
            "dmd.cache_gradient applies to generator_input self",
        ),
        (["dmd.critic_optim.betas=[0.5, 1.0]"], "dmd.critic_optim.betas must lie in [0, 1)"),
    ],
)
def test_config_errors_are_clear(overrides, message):
    with pytest.raises(ConfigError) as info:
        build_config(preset="tiny", overrides=overrides)
    assert message in str(info.value)


def test_all_problems_reported_at_once():
    with pytest.raises(ConfigError) as info:
        build_config(preset="tiny", overrides=["ode.loop.steps=0", "dmd.t_min=990", "ar_diffusion.optim.lr=-1"])
    text = str(info.value)
    assert "ode.loop.steps" in text and "t_min" in text and "ar_diffusion.optim.lr" in text


@pytest.mark.parametrize(
    ("student_steps", "ode_steps", "ok"), [(4, 48, True), (4, 8, True), (4, 10, False), (3, 48, True), (5, 48, False)]
)
def test_student_sigmas_must_be_on_the_teacher_grid(student_steps, ode_steps, ok):
    """Uniform K-step lists lie on the N-step grid exactly when K divides N (the kept pair states need it)."""
    config = build_config(preset="tiny")
    config = dataclasses.replace(config, schedule=FewStepSchedule.uniform(student_steps, ode_steps=ode_steps))
    if ok:
        validate(config)
    else:
        with pytest.raises(ConfigError, match=f"not on the {ode_steps}-step grid"):
            validate(config)


def test_frame_granularity_needs_frame_wise_blocks():
    config = build_config(preset="tiny", overrides=["model.block_size=1", "ar_diffusion.granularity=frame"])
    assert config.ar_diffusion.granularity is Granularity.FRAME


def test_fidelity_options_read_their_values_and_default_to_the_method():
    default = build_config(preset="tiny")
    assert default.dmd.cache_gradient is CacheGradient.NONE and default.dmd.score_shift is None
    assert default.cd.time_dtype is TimeDtype.FLOAT32 and default.cd.ema_first_update is EmaFirstUpdate.COPY
    authors = build_config(
        preset="tiny",
        overrides=[
            "dmd.cache_gradient=published-leak",
            "dmd.score_shift=8.0",
            "cd.time_dtype=bfloat16",
            "cd.ema_first_update=blend",
        ],
    )
    assert authors.dmd.cache_gradient is CacheGradient.PUBLISHED_LEAK and authors.dmd.score_shift == 8.0
    assert authors.cd.time_dtype is TimeDtype.BFLOAT16 and authors.cd.ema_first_update is EmaFirstUpdate.BLEND
    with pytest.raises(ConfigError, match="one of 'none', 'published-leak'"):
        build_config(preset="tiny", overrides=["dmd.cache_gradient=leak"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ar_diffusion.optim.lr=1.0e+39", "ar_diffusion.optim.lr must lie in (0, 1] (AdamW moves each weight"),
        ("dmd.optim.lr=inf", "dmd.optim.lr must be finite"),
        ("dmd.guidance_scale=nan", "dmd.guidance_scale is not a number"),
        ("dmd.guidance_scale=1e39", "dmd.guidance_scale = 1e+39 overflows a float32"),
        ("schedule.shift=inf", "schedule.shift must be finite"),
        ("ode.optim.max_grad_norm=-inf", "ode.optim.max_grad_norm must be > 0"),
    ],
)
def test_absurd_and_non_finite_numbers_are_refused(override, message):
    with pytest.raises(ConfigError) as info:
        build_config(preset="tiny", overrides=[override])
    lines = str(info.value).splitlines()[1:]
    assert len(lines) == 1 and message in lines[0], lines


def test_inf_means_no_limit_where_it_is_sensible():
    assert build_config(preset="tiny", overrides=["cd.optim.max_grad_norm=inf"]).cd.optim.max_grad_norm == float("inf")
    assert build_config(preset="tiny", overrides=["dmd.optim.lr=2e-6"]).dmd.optim.lr == 2e-6


def test_an_empty_output_folder_is_refused():
    with pytest.raises(ConfigError, match="out is empty"):
        build_config(preset="tiny", out="  ")
