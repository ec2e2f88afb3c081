"""full.stages.base: the tiny preset's assets are made once, and the base model learns the synthetic set."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from cf_ref.errors import UserError
from cf_ref.io import load_tensors
from full.config import build_config
from full.logs import read_metrics
from full.stages.base import SIGMA_SAMPLERS, learning_rate, prepare_assets, sample_base_sigmas
from full.stages.models import base_model_dir
from tests.full.stages.tiny_run import CTX, QUICK, decrease


def test_assets_are_made_once_and_the_config_points_at_them(pretrained):
    config = pretrained
    data, base = Path(config.data.latents), base_model_dir(config)
    assert (data / "index.json").is_file() and (base / "config.json").is_file()
    stamps = {p: p.stat().st_mtime_ns for p in (data / "index.json", base / "config.json")}
    raw = dataclasses.replace(config, data=dataclasses.replace(config.data, latents=None))  # as built by the CLI
    assert prepare_assets(raw, CTX) == config  # nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_base_model_learns_the_synthetic_set(pretrained):
    first, last = decrease(Path(pretrained.out) / "base-pretrain" / "metrics.jsonl", "base_loss")
    assert last < 0.8 * first, (first, last)


def test_no_assets_without_the_preset(tmp_path):
    config = build_config(overrides=["model.path=/nowhere", f"out={tmp_path}"])
    assert prepare_assets(config, CTX) is config and not any(tmp_path.iterdir())


def test_learning_rate_is_warm_up_then_cosine():
    assert [learning_rate(s, 10, 1.0, warmup=4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cosine = [learning_rate(s, 10, 2.0, warmup=2, cosine=True) for s in range(10)]
    assert cosine[:2] == [1.0, 2.0] and cosine[2] == 2.0
    assert cosine[6] == pytest.approx(1.0)  # halfway through the 8 decay steps
    assert cosine[9] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))
    # against torch's own schedulers: LinearLR for the warm-up, then CosineAnnealingLR (eta_min 0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=3e-3)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / 5, end_factor=1.0, total_iters=4)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=25)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, decay], milestones=[5])
    for s in range(30):
        assert learning_rate(s, 30, 3e-3, warmup=5, cosine=True) == pytest.approx(opt.param_groups[0]["lr"]), s
        opt.step()
        sched.step()
    with pytest.raises(ValueError, match="0 <= step < steps"):
        learning_rate(10, 10, 1.0)


def test_base_model_is_the_ema_of_its_weights_with_the_scheduled_rate(tmp_path):
    steps = ["model.tiny_base.steps=6", "model.tiny_base.warmup=2", "model.tiny_base.cosine=true"]
    ema = ["model.tiny_base.ema_decay=0.5", "model.tiny_base.videos=8"]
    config = build_config(preset="tiny", overrides=[f"out={tmp_path}", *QUICK[:2], *steps, *ema])
    config = prepare_assets(config, CTX)
    final = Path(config.out) / "base-pretrain" / "final"
    saved = load_tensors(next(base_model_dir(config).glob("*.safetensors")))
    average, last = load_tensors(final / "ema.safetensors"), load_tensors(final / "model.safetensors")
    assert saved.keys() == average.keys()
    assert all(torch.equal(saved[k], average[k]) for k in saved)
    assert any(not torch.equal(saved[k], last[k]) for k in saved)
    logged = [r["lr"] for r in read_metrics(final.parent / "metrics.jsonl") if "lr" in r]
    tb = config.model.tiny_base
    assert logged == pytest.approx([learning_rate(s, 6, tb.lr, 2, True) for s in range(6)])


def test_bad_base_settings_are_one_line(tmp_path):
    bad_settings = ("ema_decay=1.0", "warmup=-1", "sigma_sampler=cosine", "sigma_shift=0")
    for bad in (f"model.tiny_base.{b}" for b in bad_settings):
        with pytest.raises(UserError, match="model.tiny_base: need"):
            build_config(preset="tiny", overrides=[f"out={tmp_path}", bad])


def _unshift(y: torch.Tensor, s: float) -> torch.Tensor:
    """The CDF of the shifted uniform, written out: P(S_s(u) <= y) = y / (s - (s - 1) y)."""
    return y / (s - (s - 1) * y)


@pytest.mark.parametrize("sampler", SIGMA_SAMPLERS)
def test_base_sigma_samplers_follow_their_closed_form_distributions(sampler):
    shift, n = 3.0, 40_000
    draws = sample_base_sigmas(n, sampler, shift, torch.Generator().manual_seed(0))
    assert draws.shape == (n,) and draws.dtype == torch.float64 and 0 <= draws.min() and draws.max() <= 1
    y = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    u = _unshift(y, shift)
    cdf = {
        "uniform": u,
        "logit-normal": torch.special.ndtr(torch.log(u / (1 - u))),
        "mix": 0.5 * y + 0.5 * u,
    }[sampler]
    empirical = (draws[:, None] <= y[None]).double().mean(0)
    assert (empirical - cdf).abs().max() < 0.012  # Kolmogorov–Smirnov at 40 000 draws: 1 % level ≈ 0.008
    plain = sample_base_sigmas(n, sampler, 1.0, torch.Generator().manual_seed(0))
    if sampler != "logit-normal":  # shift 1: every draw uniform
        assert ((plain[:, None] <= y[None]).double().mean(0) - y).abs().max() < 0.012


def test_base_sigma_sampler_refuses_bad_settings():
    for bad in (("cosine", 1.0), ("uniform", 0.0), ("mix", -1.0)):
        with pytest.raises(ValueError, match="need a sampler in"):
            sample_base_sigmas(4, *bad)


def _base_losses(tmp_path, *overrides) -> list[float]:
    steps = ["model.tiny_base.steps=3", "model.tiny_base.videos=8", "model.tiny_base.batch_size=2"]
    config = build_config(preset="tiny", overrides=[f"out={tmp_path}", *QUICK[:2], *steps, *overrides])
    prepare_assets(config, CTX)
    return [r["base_loss"] for r in read_metrics(tmp_path / "base-pretrain" / "metrics.jsonl") if "base_loss" in r]


def test_base_sigma_sampler_option_draws_as_the_stages_do_when_uniform(tmp_path):
    # uniform with the schedule's shift written out takes the sampler's path: the same draws, the same losses
    stages = _base_losses(tmp_path / "a")
    written = _base_losses(tmp_path / "b", "model.tiny_base.sigma_shift=5.0")  # the tiny preset's schedule.shift
    assert len(stages) == 3 and written == pytest.approx(stages, rel=1e-6, abs=0)
    mixed = _base_losses(tmp_path / "c", "model.tiny_base.sigma_sampler=mix", "model.tiny_base.sigma_shift=3.0")
    assert len(mixed) == 3 and all(math.isfinite(x) for x in mixed) and mixed != pytest.approx(stages)
