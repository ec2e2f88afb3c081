"""full.stage_inputs: which output feeds which stage; missing inputs are clear errors."""

from __future__ import annotations

import pytest

from full.config import ConfigError, build_config
from full.recipes import Stage
from full.stage_inputs import final_weights, stage_inputs


def test_stage_inputs_chain_outputs(tmp_path):
    c = build_config(preset="tiny", overrides=[f"out={tmp_path}"])
    assert stage_inputs(c, Stage.AR_DIFFUSION).init is None  # the base model
    assert stage_inputs(c, Stage.ODE_PAIRS, check=False).init == final_weights(c, Stage.AR_DIFFUSION)
    ode = stage_inputs(c, Stage.ODE, check=False)
    assert ode.init == final_weights(c, Stage.AR_DIFFUSION) and ode.pairs == tmp_path / "ode-pairs"
    assert stage_inputs(c, Stage.DMD, check=False).init == final_weights(c, Stage.ODE)
    pp = build_config(preset="tiny", recipe="causal-forcing-pp", overrides=[f"out={tmp_path}"])
    assert stage_inputs(pp, Stage.DMD, check=False).init == final_weights(pp, Stage.CD)
    assert stage_inputs(pp, Stage.CD, check=False).init == final_weights(pp, Stage.AR_DIFFUSION)
    sf = build_config(preset="tiny", recipe="self-forcing", overrides=[f"out={tmp_path}"])
    assert stage_inputs(sf, Stage.ODE_PAIRS, check=False).init is None  # bidirectional pairs: the base model
    assert stage_inputs(sf, Stage.ODE, check=False).init is None  # self forcing: student from the base model
    adi = build_config(preset="tiny", recipe="ar-diffusion-init", overrides=[f"out={tmp_path}"])
    assert stage_inputs(adi, Stage.DMD, check=False).init == final_weights(adi, Stage.AR_DIFFUSION)


def test_explicit_inputs_win(tmp_path):
    weights, pairs = tmp_path / "w.safetensors", tmp_path / "pairs"
    c = build_config(preset="tiny", overrides=[f"out={tmp_path}", f"dmd.init={weights}", f"ode.pairs={pairs}"])
    assert stage_inputs(c, Stage.DMD, check=False).init == weights
    assert stage_inputs(c, Stage.ODE, check=False).pairs == pairs


def test_missing_inputs_are_clear(tmp_path):
    c = build_config(preset="tiny", overrides=[f"out={tmp_path}"])
    with pytest.raises(ConfigError, match="run that stage first"):
        stage_inputs(c, Stage.ODE)
    sf = build_config(preset="tiny", recipe="self-forcing", overrides=[f"out={tmp_path}"])
    with pytest.raises(ConfigError, match="cd distils along an AR teacher's PF-ODE"):
        stage_inputs(sf, Stage.CD, check=False)
    ar_pairs = build_config(preset="tiny", recipe="self-forcing", overrides=[f"out={tmp_path}", "ode_pairs.teacher=ar"])
    with pytest.raises(ConfigError, match="ode_pairs.teacher=ar needs an AR teacher"):
        stage_inputs(ar_pairs, Stage.ODE_PAIRS, check=False)
