"""full.stages.batches: a stage's set, checked against the model, and its per-process batches."""

from __future__ import annotations

import pytest
import torch

from full.config import build_config
from full.data import DataError, SetKind, TensorSet
from full.distributed import DistContext
from full.stages.batches import check_text, latent_shape, open_set, stage_batches
from full.synthetic import SyntheticSpec, write_synthetic_latents


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("set") / "latents"
    return TensorSet(write_synthetic_latents(path, SyntheticSpec(count=12, text_length=5)), SetKind.LATENTS)


def test_processes_read_disjoint_batches_covering_the_set(data):
    config = build_config(preset="tiny")
    seen = []
    for rank in range(3):
        ctx = DistContext(rank=rank, world_size=3)
        feed = stage_batches(data, config, ctx, batch_size=2, grad_accum=2, stage="ode")
        for micro in range(2):
            batch = feed.fetch(0, micro)
            assert batch["latents"].dtype is torch.float32 and batch["latents"].shape == (2, 4, 4, 8, 8)
            seen += [int(i) for i in feed.order.batch(0, micro)]
    assert sorted(seen) == list(range(12))  # one step of 3 processes × 2 micro-batches × 2 reads every video once
    negative = feed.negative(3)
    assert negative.shape == (3, 5, 32) and torch.equal(negative[0], data.negative)


def test_a_stage_reads_its_own_order(data):
    config = build_config(preset="tiny")
    ode, cd = (stage_batches(data, config, DistContext(), 4, 1, stage) for stage in ("ode", "cd"))
    assert [ode.order.batch(s) for s in range(3)] != [cd.order.batch(s) for s in range(3)]


def test_set_checks_are_clear(data, model, tmp_path):
    with pytest.raises(DataError, match="needs a prepared prompts set: set data.prompts"):
        open_set(None, SetKind.PROMPTS, "dmd")
    assert open_set(str(data.path), SetKind.LATENTS, "ode").fields == data.fields
    check_text(data, model)  # the model's text width
    narrow = TensorSet(write_synthetic_latents(tmp_path / "narrow", SyntheticSpec(count=1, text_dim=16)))
    with pytest.raises(DataError, match=f"text embeddings have width 16, the model expects {model.config.text_dim}"):
        check_text(narrow, model)
    config = build_config(preset="tiny")
    assert latent_shape(config, model) == (4, model.config.in_channels, 8, 8)
