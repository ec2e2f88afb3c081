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
