"""full.pipeline: a recipe's chain stage by stage equals the whole run; an interrupted stage resumes bit for bit;
work on disk is never overwritten without ``--resume``."""

from __future__ import annotations

import pytest
import torch

from cf_ref.io import load_tensors
from full.config import build_config
from full.distributed import DistContext
from full.logs import read_metrics
from full.pipeline import run_training
from full.recipes import Stage
from full.train import StageStateError

CTX = DistContext()

TINY_CHAIN = [
    "model.tiny_base.steps=0",
    "model.tiny_base.videos=8",
    "logging.progress=false",
    "logging.sample_count=0",
    "ar_diffusion.loop.steps=2",
    "ar_diffusion.loop.batch_size=2",
    "ode_pairs.max_pairs=4",
    "schedule.ode_steps=4",
    "ode.loop.steps=2",
    "ode.loop.batch_size=2",
    "dmd.loop.steps=7",
    "dmd.loop.checkpoint_every=3",
    "dmd.ema_start=1",
]


def test_kill_and_resume_equals_an_uninterrupted_run_bitwise(tmp_path):
    """DMD (two optimisers, EMA, random exit steps, critic/generator schedule) interrupted after 4 of 7 steps
    (last checkpoint at 3) and resumed: every final tensor equals the uninterrupted run's, bit for bit."""
    whole = build_config(preset="tiny", overrides=[f"out={tmp_path / 'a'}", *TINY_CHAIN])
    run_training(whole, ctx=CTX)
    split = build_config(preset="tiny", overrides=[f"out={tmp_path / 'b'}", *TINY_CHAIN])
    for stage in (Stage.AR_DIFFUSION, Stage.ODE_PAIRS, Stage.ODE):
        run_training(split, stage=stage, ctx=CTX)
    run_training(split, stage=Stage.DMD, ctx=CTX, stop_after=4)
    assert not (tmp_path / "b" / "dmd" / "final").exists()
    with pytest.raises(StageStateError, match="pass --resume"):
        run_training(split, ctx=CTX)
    run_training(split, resume=True, ctx=CTX)
    for name in ("model", "ema", "critic"):
        a = load_tensors(tmp_path / "a" / "dmd" / "final" / f"{name}.safetensors")
        b = load_tensors(tmp_path / "b" / "dmd" / "final" / f"{name}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    la = read_metrics(tmp_path / "a" / "dmd" / "metrics.jsonl")
    lb = read_metrics(tmp_path / "b" / "dmd" / "metrics.jsonl")
    strip = [{k: v for k, v in r.items() if k not in ("time", "step_time_s")} for r in la]
    assert strip == [{k: v for k, v in r.items() if k not in ("time", "step_time_s")} for r in lb]
