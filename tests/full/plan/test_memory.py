from __future__ import annotations

import pytest
import torch
from torch import nn

from full.config import Parallelism, Precision
from full.distributed import wrap_trainable
from full.plan.memory import FakeScalarsReadZero, fake_tensors, simulated_ranks, storage_bytes, track_peak


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 64))


def _step(model: nn.Module, x: torch.Tensor):
    optim = torch.optim.AdamW(model.parameters())

    def run() -> None:
        model(x).square().mean().backward()
        optim.step()

    return run, optim


def test_fake_prediction_equals_real_measurement_and_the_count():
    """The same step with fake and with real tensors: the same peak; weights and AdamW state as counted."""
    torch.manual_seed(0)
    real = _mlp()
    x = torch.randn(32, 64)
    run, optim = _step(real, x)
    measured = track_peak(run, [real, optim, x])
    with fake_tensors():
        fake, fx = _mlp(), torch.randn(32, 64)
    run, optim = _step(fake, fx)
    predicted = track_peak(run, [fake, optim, fx])
    assert predicted == measured
    n = sum(p.numel() for p in real.parameters())
    assert measured.parameters == 4 * n
    assert measured.gradients == 4 * n
    assert measured.optimizer >= 2 * 4 * n


def test_fsdp_over_simulated_ranks_holds_one_shard():
    with fake_tensors():
        model = _mlp()
    full = storage_bytes([model])
    with simulated_ranks(4) as ctx:
        assert ctx.world_size == 4 and torch.distributed.get_world_size() == 4
        runner = wrap_trainable(model, ctx, Parallelism.FSDP, Precision.BF16, blocks=list(model))
        assert storage_bytes([runner]) == pytest.approx(full / 4, rel=0.02)
    assert not torch.distributed.is_initialized()


def test_simulated_ranks_refuses_zero():
    with pytest.raises(ValueError, match=">= 1"), simulated_ranks(0):
        pass


def test_numbers_read_from_fake_tensors_are_zero_real_ones_unchanged():
    with fake_tensors():
        fake = torch.ones(3)
    with FakeScalarsReadZero():
        assert float(fake.sum()) == 0.0
        assert float(torch.ones(3).sum()) == 3.0
