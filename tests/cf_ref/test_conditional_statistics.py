"""cf_ref.injectivity.conditional_statistics against a linear teacher with Gaussian inputs (closed form)."""

import torch

from cf_ref.injectivity import (
    conditional_expectation,
    conditional_statistics,
    non_injectivity_index,
)
from cf_ref.masks import block_causal_visibility


def _linear_teacher(a: torch.Tensor):
    """x0_i = sum_j a[i, j] u_j for inputs u: [..., F, 1]."""

    def teacher_map(u: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,...jd->...id", a, u)

    return teacher_map


def test_linear_teacher_matches_closed_form():
    # u ~ N(0, I): E[x0_i | u_<=i] = sum_{j<=i} a_ij u_j, Var = sum_{j>i} a_ij^2, eta_i = Var / sum_j a_ij^2.
    gen = torch.Generator().manual_seed(0)
    f = 4
    a = torch.tensor([[1.0, 0.8, 0.5, 0.2], [0.3, 1.0, 0.6, 0.4], [0.1, 0.2, 1.0, 0.9], [0.5, 0.5, 0.5, 0.5]])
    a = a.double()
    u = torch.randn(256, f, 1, generator=gen, dtype=torch.float64)
    vis = block_causal_visibility(f)
    stats = conditional_statistics(_linear_teacher(a), u, vis, 400, generator=gen)
    lower = torch.tril(a)
    expected_mean = torch.einsum("ij,bjd->bid", lower, u)
    hidden_var = (a - lower).pow(2).sum(dim=1)
    assert torch.allclose(stats.mean, expected_mean, atol=0.3)  # MC standard error <= sqrt(0.9 / 400) ≈ 0.05
    assert (stats.mean - expected_mean).pow(2).mean().sqrt() < 0.06
    assert torch.allclose(stats.variance.mean(dim=(0, 2)), hidden_var, rtol=0.1, atol=1e-12)
    assert torch.allclose(stats.index, hidden_var / a.pow(2).sum(dim=1), atol=0.05)
    # the last frame sees everything: exact, no resampling
    assert torch.allclose(stats.mean[:, -1], torch.einsum("j,bjd->bd", a[-1], u), atol=1e-12)
    assert stats.index[-1] == 0 and bool((stats.variance[:, -1] == 0).all())


def test_halves_agree_with_wrappers():
    f = 3
    a = torch.randn(f, f, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    u = torch.randn(32, f, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    vis = block_causal_visibility(f)
    stats = conditional_statistics(_linear_teacher(a), u, vis, 16, generator=torch.Generator().manual_seed(3))
    mean = conditional_expectation(_linear_teacher(a), u, vis, 16, generator=torch.Generator().manual_seed(3))
    eta = non_injectivity_index(_linear_teacher(a), u, vis, 16, generator=torch.Generator().manual_seed(3))
    assert torch.equal(stats.mean, mean)
    assert torch.equal(stats.index, eta)
