import math

import pytest
import torch
from scipy.integrate import quad

from cf_ref.losses import (
    LossWeighting,
    finite_or_raise,
    flow_matching_loss,
    loss_weight,
    per_frame_mse,
    weighted_mean,
    x0_regression_loss,
)


def test_flow_matching_loss_is_zero_at_the_target_and_weighted_per_frame():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    assert float(flow_matching_loss(eps - x0, x0, eps)) == 0.0
    v = eps - x0 + 1.0  # error 1 everywhere
    assert float(flow_matching_loss(v, x0, eps)) == pytest.approx(1.0)
    w = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert float(flow_matching_loss(v, x0, eps, w)) == pytest.approx(1 / 6)


def test_per_frame_mse_brute_force():
    a, b = torch.randn(2, 3, 2, 2), torch.randn(2, 3, 2, 2)
    want = torch.tensor([[float(((a[i, f] - b[i, f]) ** 2).mean()) for f in range(3)] for i in range(2)])
    torch.testing.assert_close(per_frame_mse(a, b), want)
    assert float(x0_regression_loss(a, b)) == pytest.approx(float(((a - b) ** 2).mean()), rel=1e-6)


def test_loss_errors():
    with pytest.raises(ValueError, match="shape"):
        per_frame_mse(torch.zeros(2, 3, 1), torch.zeros(2, 2, 1))
    with pytest.raises(ValueError, match="per frame"):
        weighted_mean(torch.zeros(2, 3), torch.zeros(3))
    with pytest.raises(FloatingPointError, match="not finite"):
        finite_or_raise(torch.tensor(float("nan")))


def test_weighted_flow_matching_brute_force_and_float32_accumulation():
    g = torch.Generator().manual_seed(1)
    v, x0, eps = (torch.randn(3, 2, 4, generator=g) for _ in range(3))
    w = torch.rand(3, 2, generator=g)
    want = sum(float(w[b, f] * ((v[b, f] - (eps[b, f] - x0[b, f])) ** 2).mean()) for b in range(3) for f in range(2))
    assert float(flow_matching_loss(v, x0, eps, w)) == pytest.approx(want / 6, rel=1e-6)
    half = torch.full((1, 1, 4), 1.0 + 2**-7, dtype=torch.bfloat16)  # one bf16 ulp above 1
    assert per_frame_mse(half, torch.ones(1, 1, 4, dtype=torch.bfloat16)).dtype == torch.float32
    assert per_frame_mse(half, torch.ones(1, 1, 4, dtype=torch.bfloat16)).item() == 2**-14
    per_frame = per_frame_mse(torch.zeros(2, 3, dtype=torch.float64), torch.full((2, 3), 2.0, dtype=torch.float64))
    assert per_frame.dtype == torch.float32 and bool((per_frame == 4).all())  # [B, F]: S empty


def test_bell_weight_has_unit_mean_and_peaks_mid_schedule():
    mean, _ = quad(lambda u: float(loss_weight(torch.tensor(u, dtype=torch.float64), LossWeighting.BELL)), 0, 1)
    assert mean == pytest.approx(1.0, abs=1e-9)
    w = loss_weight(torch.tensor([0.0, 0.5, 1.0]), LossWeighting.BELL)
    assert float(w[0]) == pytest.approx(0.0, abs=1e-12) and float(w[1]) > 1.0
    assert math.isclose(float(w[0]), float(w[2]), abs_tol=1e-12)
    assert bool((loss_weight(torch.rand(5)) == 1).all())


def test_loss_weighting_must_be_an_enum_member():
    with pytest.raises(ValueError, match="LossWeighting"):
        loss_weight(torch.rand(3), "uniform")  # was silently the bell weight
