"""full.config.reading: YAML / TOML files, overrides, merging, and the coercion of plain data into the schema."""

from __future__ import annotations

import pytest

from cf_ref.recipes import GeneratorInput
from cf_ref.schedule import FewStepSchedule
from full.config import ConfigError, DMDConfig, RunConfig, from_dict, merge, parse_override, read_file


def test_yaml_and_toml_files_read_to_the_same_tables(tmp_path):
    (tmp_path / "a.yaml").write_text("recipe: causal-forcing-pp\ndmd:\n  guidance_scale: 4.5\n  loop: {steps: 7}\n")
    (tmp_path / "a.toml").write_text(
        'recipe = "causal-forcing-pp"\n[dmd]\nguidance_scale = 4.5\n[dmd.loop]\nsteps = 7\n'
    )
    expected = {"recipe": "causal-forcing-pp", "dmd": {"guidance_scale": 4.5, "loop": {"steps": 7}}}
    assert read_file(tmp_path / "a.yaml") == read_file(tmp_path / "a.toml") == expected
    (tmp_path / "empty.yaml").write_text("")
    assert read_file(tmp_path / "empty.yaml") == {}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.yaml", "dmd: [1, 2\n", "not valid YAML"),
        ("bad.toml", "dmd = [1, 2\n", "not valid TOML"),
        ("list.yaml", "- 1\n- 2\n", "must hold a table of settings at the top level"),
        ("c.json", "{}", "expected a .yaml, .yml or .toml"),
    ],
)
def test_bad_files_are_clear(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_file(tmp_path / name)
    with pytest.raises(ConfigError, match="does not exist"):
        read_file(tmp_path / "missing.yaml")


def test_overrides_are_dotted_paths_with_yaml_values():
    assert parse_override("dmd.generator_input=data") == {"dmd": {"generator_input": "data"}}
    assert parse_override("schedule.timesteps=[1000, 500]") == {"schedule": {"timesteps": [1000, 500]}}
    assert parse_override("ode.init=null") == {"ode": {"init": None}}
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        parse_override("nonsense")
    with pytest.raises(ConfigError, match="empty name"):
        parse_override("dmd..x=1")


def test_merge_merges_tables_and_replaces_the_rest():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    assert merge(base, {"a": {"y": [3]}, "c": 2}) == {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 1}  # inputs untouched


def test_coercion_follows_the_annotations():
    c = from_dict(RunConfig, {"seed": 3, "dmd": {"generator_input": "data", "optim": {"betas": [0.5, 0.9]}}})
    assert c.seed == 3 and c.dmd.generator_input is GeneratorInput.DATA_CONTEXT
    assert c.dmd.optim.betas == (0.5, 0.9) and isinstance(c.dmd.optim.betas, tuple)
    assert c.dmd.guidance_scale == DMDConfig().guidance_scale  # missing keys keep their defaults
    s = from_dict(RunConfig, {"schedule": {"timesteps": [1000, 500], "ode_steps": 8}}).schedule
    assert s == FewStepSchedule((1000.0, 500.0), ode_steps=8)  # ints read as floats where floats are declared


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"dmd": {"guidanse_scale": 1}}, "did you mean 'guidance_scale'"),
        ({"dmd": {"generator_input": "sideways"}}, "'sideways' is not one of 'self', 'data'"),
        ({"dmd": {"loop": {"steps": "many"}}}, "dmd.loop.steps: expected an integer"),
        ({"dmd": {"loop": {"steps": True}}}, "dmd.loop.steps: expected an integer"),
        ({"dmd": {"same_exit_across_blocks": 1}}, "expected true or false"),
        ({"dmd": {"optim": {"betas": [0.5]}}}, "expected a list of 2 values"),
        ({"dmd": 3}, "dmd: expected a table of settings"),
        ({"seed": None}, "seed: may not be null"),
        ({"schedule": {"timesteps": [500, 1000]}}, "schedule: timesteps must be strictly decreasing"),
        ({"schedule": {"shift": -1.0}}, "schedule: shift must be > 0"),
    ],
)
def test_coercion_errors_name_the_setting(data, message):
    with pytest.raises(ConfigError) as info:
        from_dict(RunConfig, data)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "value"), [("2e-6", 2e-6), ("1E-4", 1e-4), (".5", 0.5), ("2.0e-06", 2e-6), ("1_000.5", 1000.5), ("7", 7.0)]
)
def test_floats_are_read_as_python_reads_them(tmp_path, text, value):
    """YAML 1.1 reads ``2e-6`` (no dot) as a string; a float setting takes any string Python's ``float`` reads, in
    overrides and in files alike."""
    assert from_dict(RunConfig, merge({}, parse_override(f"dmd.optim.lr={text}"))).dmd.optim.lr == value
    (tmp_path / "c.yaml").write_text(f"dmd:\n  optim:\n    lr: {text}\n")
    assert from_dict(RunConfig, read_file(tmp_path / "c.yaml")).dmd.optim.lr == value
    assert from_dict(RunConfig, {"dmd": {"optim": {"max_grad_norm": "inf"}}}).dmd.optim.max_grad_norm == float("inf")
    with pytest.raises(ConfigError, match="dmd.optim.lr: expected a number, got '2e-6x'"):
        from_dict(RunConfig, {"dmd": {"optim": {"lr": "2e-6x"}}})
    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(RunConfig, {"seed": "3"})  # integers stay strict


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    """Five problems of different kinds — unknown key, renamed key, wrong type, wrong list length, cross-field
    check — in one message; no check repeats a problem its setting already has."""
    from full.config import build_config

    (tmp_path / "five.yaml").write_text(
        "model:\n  shift: 3\nseed: x\nvideo: {latent_frames: 5}\n"
        "ar_diffusion:\n  optim: {lr: 2e-6, betas: [0.5]}\ndmd:\n  guidanse_scale: 2\n"
    )
    with pytest.raises(ConfigError) as info:
        build_config(tmp_path / "five.yaml", preset="tiny", overrides=["model.block_size=2", "ode.loop.steps=0"])
    lines = str(info.value).splitlines()[1:]
    assert len(lines) == 6, lines
    for expected in (
        "did you mean 'guidance_scale'",
        "model.shift is now schedule.shift",
        "seed: expected an integer, got 'x'",
        "ar_diffusion.optim.betas: expected a list of 2 values",
        "model.block_size 2 does not divide video.latent_frames 5",
        "ode.loop.steps must be >= 1",
    ):
        assert sum(expected in line for line in lines) == 1, expected


def test_renamed_settings_of_older_configs_are_named(tmp_path):
    old = {"ode_pairs": {"num_steps": 48}, "cd": {"num_steps": 48}, "dmd": {"rollout": "self"}}
    with pytest.raises(ConfigError) as info:
        from_dict(RunConfig, {**old, "model": {"few_step_timesteps": [1000, 500]}})
    text = str(info.value)
    for before, after in [
        ("ode_pairs.num_steps", "schedule.ode_steps"),
        ("cd.num_steps", "schedule.ode_steps"),
        ("dmd.rollout", "dmd.generator_input"),
        ("model.few_step_timesteps", "schedule.timesteps"),
    ]:
        assert f"{before} is now {after}" in text


def test_a_binary_or_latin1_config_file_is_one_clear_error(tmp_path):
    (tmp_path / "a.yaml").write_bytes(b"seed: 1\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"a.yaml is not UTF-8 text \(byte 13"):
        read_file(tmp_path / "a.yaml")
    (tmp_path / "b.toml").write_bytes(b"\x00\x01\x02")
    with pytest.raises(ConfigError, match="binary"):
        read_file(tmp_path / "b.toml")
