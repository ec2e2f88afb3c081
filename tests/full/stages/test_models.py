"""full.stages.models: loading the base model, a stage's weights on top, frozen copies under bf16."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cf_ref.io import save_tensors
from full.config import Precision, build_config
from full.distributed import DistContext
from full.model_files import ModelFolderError
from full.stages.models import build_model, frozen, load_model
from full.tiny import tiny_transformer


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    tiny_transformer(seed=0).save_pretrained(out / "base-model")
    return build_config(preset="tiny", overrides=[f"out={out}"])


def test_load_model_reads_a_transformer_or_a_pipeline_folder(config, tmp_path):
    from pathlib import Path

    base = Path(config.out) / "base-model"
    a = load_model(base, "base")
    tiny_transformer(seed=0).save_pretrained(tmp_path / "pipeline" / "transformer")
    b = load_model(tmp_path / "pipeline", "pipeline")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ModelFolderError, match="is not a diffusers model folder"):
        load_model(tmp_path, "nothing")


def test_build_model_puts_a_stages_weights_on_the_base(config, tmp_path):
    other = tiny_transformer(seed=1)
    save_tensors(tmp_path / "w.safetensors", {k: v.contiguous() for k, v in other.state_dict().items()})
    model = build_model(config, tmp_path / "w.safetensors", "student")
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), other.parameters()))
    base = build_model(config, None, "base")
    assert not all(torch.equal(p, q) for p, q in zip(base.parameters(), other.parameters()))


def test_frozen_copies_are_stored_in_bf16_keeping_the_fp32_modules(config):
    bf16 = dataclasses.replace(config, parallel=dataclasses.replace(config.parallel, precision=Precision.BF16))
    model = build_model(bf16, None, "teacher")
    keep = tuple(model._keep_in_fp32_modules or ())
    runner = frozen(model, bf16, DistContext())
    dtypes = {n: p.dtype for n, p in runner.model.named_parameters()}
    assert any(d is torch.bfloat16 for d in dtypes.values())
    assert all(d is torch.float32 for n, d in dtypes.items() if any(k in n for k in keep)) and keep
    assert not any(p.requires_grad for p in runner.parameters())
    ema = frozen(build_model(bf16, None, "ema"), bf16, DistContext(), cast=False)
    assert all(p.dtype is torch.float32 for p in ema.parameters())
