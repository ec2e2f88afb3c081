"""full.stages.base: the tiny preset's assets are made once, and the base model learns the synthetic set."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from full.config import build_config
from full.stages.base import prepare_assets
from full.stages.models import base_model_dir
from tests.full.stages.tiny_run import CTX, decrease


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
