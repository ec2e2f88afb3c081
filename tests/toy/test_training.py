import math

import pytest
import torch
from torch import nn

from toy.training import OptimConfig, make_optimizer, train


def test_train_fits_a_linear_regression_and_decays_lr():
    g = torch.Generator().manual_seed(0)
    w_true = torch.tensor([[2.0, -1.0]])
    model = nn.Linear(2, 1)

    def loss_fn(step):
        x = torch.randn(64, 2, generator=g)
        return ((model(x) - x @ w_true.T) ** 2).mean()

    hist = train(model, loss_fn, OptimConfig(steps=400, lr=0.05))
    assert hist[-1] < 1e-3 < hist[0]
    opt, sched = make_optimizer(model.parameters(), OptimConfig(steps=10, lr=1.0, final_lr_fraction=0.1))
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)


def test_train_stops_on_non_finite_loss():
    model = nn.Linear(1, 1)
    with pytest.raises(FloatingPointError, match="step 0"):
        train(model, lambda t: model.weight.sum() * float("nan"), OptimConfig(steps=3))


def _lrs(config: OptimConfig) -> list[float]:
    """The learning rate of each step of ``config`` (the scheduler's value before the step)."""
    opt, sched = make_optimizer(nn.Linear(1, 1).parameters(), config)
    out = []
    for _ in range(config.steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_ramps_linearly_then_follows_the_cosine():
    steps, lr, f, warmup = 40, 0.5, 0.1, 8
    got = _lrs(OptimConfig(steps=steps, lr=lr, final_lr_fraction=f, warmup_steps=warmup))
    cosine = [lr * (f + (1 - f) * 0.5 * (1 + math.cos(math.pi * t / steps))) for t in range(steps)]
    expected = [c * min(1.0, (t + 1) / warmup) for t, c in enumerate(cosine)]
    assert got == pytest.approx(expected, rel=1e-12)
    assert got[0] == pytest.approx(cosine[0] / warmup) and got[warmup:] == pytest.approx(cosine[warmup:], rel=1e-12)
    assert _lrs(OptimConfig(steps=steps, lr=lr, final_lr_fraction=f)) == pytest.approx(cosine, rel=1e-12)


@pytest.mark.parametrize("warmup", [-1, 40, 41])
def test_warmup_longer_than_training_or_negative_is_refused(warmup):
    with pytest.raises(ValueError, match="warmup_steps"):
        OptimConfig(steps=40, warmup_steps=warmup)
