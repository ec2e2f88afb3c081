"""Fixtures shared by the stage tests: one tiny causal-forcing run (and CD from its AR teacher), and the tiny
preset's trained base model. Session-scoped: every stage test file reads the same runs."""

from __future__ import annotations

import pytest

from full.config import build_config
from full.pipeline import run_training
from full.recipes import Stage
from full.stages.base import prepare_assets
from tests.full.stages.tiny_run import CTX, QUICK


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    """One tiny causal-forcing run (ar-diffusion → ode-pairs → ode → dmd), then cd from the same AR teacher in
    ``<out>-pp`` (a run folder keeps one recipe). Returns the resolved configuration (data.latents set)."""
    out = tmp_path_factory.mktemp("run")
    config = build_config(preset="tiny", overrides=[f"out={out}", *QUICK])
    run_training(config, ctx=CTX)
    teacher = f"cd.init={out}/ar-diffusion/final/model.safetensors"
    pp = build_config(preset="tiny", recipe="causal-forcing-pp", out=f"{out}-pp", overrides=[*QUICK, teacher])
    run_training(pp, stage=Stage.CD, ctx=CTX)
    return prepare_assets(config, CTX)


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory):
    """The tiny preset's base model trained bidirectionally on the synthetic set (it moves shapes)."""
    out = tmp_path_factory.mktemp("base")
    config = build_config(preset="tiny", overrides=[f"out={out}", *QUICK[:2], "model.tiny_base.steps=150"])
    return prepare_assets(config, CTX)
