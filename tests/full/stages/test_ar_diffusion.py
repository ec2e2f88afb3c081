"""full.stages.ar_diffusion: the AR teacher learns under teacher forcing and under diffusion forcing."""

from __future__ import annotations

from full.config import build_config
from full.pipeline import run_training
from full.recipes import Stage
from tests.full.stages.tiny_run import CTX, QUICK, decrease


def test_teacher_forcing_loss_decreases(run):
    first, last = decrease(f"{run.out}/ar-diffusion/metrics.jsonl", "teacher_loss")
    assert last < 0.8 * first, (first, last)


def test_diffusion_forcing_ablation_trains_too(tmp_path):
    config = build_config(preset="tiny", overrides=[f"out={tmp_path}", *QUICK, "ar_diffusion.forcing=diffusion"])
    run_training(config, stage=Stage.AR_DIFFUSION, ctx=CTX)
    first, last = decrease(tmp_path / "ar-diffusion" / "metrics.jsonl", "teacher_loss")
    assert last < 0.8 * first
