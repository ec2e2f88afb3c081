"""``make_plan`` and ``cf-ref full plan``: a quick tiny plan end to end, and bad input in one line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cf_ref.cli import main
from cf_ref.errors import UserError
from full.config import build_config
from full.model import WAN21_T2V_14B
from full.plan.planner import architectures, make_plan, plan_json, plan_text


def test_architectures_of_the_published_config_and_the_real_score_override():
    config = build_config("configs/full/causal_forcing_chunkwise.yaml")
    arch, base, real = architectures(config)
    assert base == real == "wan2.1-t2v-1.3b" and arch.text_tokens == 512
    arch, _, real = architectures(config, "Wan2.1-T2V-14B-Diffusers")
    assert real == "wan2.1-t2v-14b" and arch.real_score == WAN21_T2V_14B


def test_tiny_sampling_plan_text_and_json():
    config = build_config(preset="tiny")
    plan = make_plan(config, [1], "h200", mfu=0.5, families=["sampling"])
    text = plan_text(plan)
    assert "H200" in text and "MFU 0.5" in text and "| sampling | 1 |" in text and "FPS" in text
    data = json.loads(json.dumps(plan_json(plan)))
    (row,) = data["ranks"]["1"]["steps"]
    assert row["step"] == "sampling" and row["fits"] and row["fps"] > 0 and row["total_gib"] > 0
    assert data["ranks"]["1"]["ops"]["sampling"]["flops"] > 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"ranks": [0]}, ">= 1"),
        ({"ranks": [1], "gpu_name": "tpu-v5"}, "known: h100-sxm-80gb"),
        ({"ranks": [1], "families": ["warmup"]}, "unknown stage"),
        ({"ranks": [1], "mfu": 1.5}, "MFU"),
    ],
)
def test_bad_input_is_a_user_error(kwargs, match):
    with pytest.raises(UserError, match=match):
        make_plan(build_config(preset="tiny"), **kwargs)


def test_cli_plan_writes_json(tmp_path):
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(
        main, ["full", "plan", "--preset", "tiny", "--stage", "sampling", "--gpu", "b200", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "B200" in result.output and json.loads(out.read_text())["gpu"]["name"] == "B200 180 GB"


@pytest.mark.parametrize(
    "args,match",
    [(["--gpus", "0"], "must be >= 1"), (["--gpu", "v100"], "unknown GPU 'v100'; known: h100-sxm-80gb")],
)
def test_cli_bad_input_one_line(args, match):
    result = CliRunner().invoke(main, ["full", "plan", "--preset", "tiny", *args])
    assert result.exit_code != 0 and match in result.output
    assert "Traceback" not in result.output
