import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

from toy import gmm
from toy.data import shared_mode_mixture


def random_mixture(seed: int, k: int, d: int) -> gmm.Mixture:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(k, d, d, generator=g, dtype=torch.float64)
    covs = a @ a.transpose(1, 2) / d + 0.2 * torch.eye(d, dtype=torch.float64)
    means = 1.5 * torch.randn(k, d, generator=g, dtype=torch.float64)
    logits = torch.randn(k, generator=g, dtype=torch.float64)
    return gmm.Mixture(torch.log_softmax(logits, 0), means, covs)


def noised_mixture(mix: gmm.Mixture, sigma: float) -> gmm.Mixture:
    """Law of x_σ: means (1-σ)μ_k, covariances (1-σ)²Σ_k + σ²I."""
    eye = torch.eye(mix.dim, dtype=torch.float64)
    return gmm.Mixture(mix.log_weights, (1 - sigma) * mix.means, (1 - sigma) ** 2 * mix.covs + sigma**2 * eye)


@given(seed=st.integers(0, 100), k=st.integers(1, 3), d=st.integers(1, 3), sigma=st.floats(0.1, 0.9))
def test_velocity_equals_score_identity(seed, k, d, sigma):
    """Independent route via autograd: E[ε|x] = -σ ∇log p_σ(x), and v = (E[ε|x] - x) / (1-σ)."""
    mix = random_mixture(seed, k, d)
    x = torch.randn(1, 5, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1)).requires_grad_()
    logp = gmm.log_prob(noised_mixture(mix, sigma), x).sum()
    (score,) = torch.autograd.grad(logp, x)
    want = (-sigma * score - x.detach()) / (1 - sigma)
    torch.testing.assert_close(gmm.velocity(mix, x.detach(), sigma), want, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_velocity_matches_monte_carlo_conditional_expectation(seed):
    """Self-normalised importance sampling of E[ε - x0 | x_σ] with x0 drawn from the data."""
    mix = random_mixture(seed, 3, 2)
    sigma = 0.6
    g = torch.Generator().manual_seed(seed)
    x0, _ = gmm.sample(mix, 400_000, g)
    x = torch.tensor([[[0.3, -0.4], [1.0, 0.5]]], dtype=torch.float64)  # [1, 2, D]
    for m in range(2):
        eps = (x[0, m] - (1 - sigma) * x0) / sigma
        logw = -0.5 * (eps**2).sum(-1)  # N(x; (1-σ)x0, σ²I) up to a constant
        w = torch.softmax(logw, 0)[:, None]
        mc = (w * (eps - x0)).sum(0)
        ess = 1 / float((w**2).sum())
        assert ess > 1000
        torch.testing.assert_close(gmm.velocity(mix, x, sigma)[0, m], mc, atol=0.05, rtol=0)


def test_single_gaussian_velocity_closed_form():
    mix = random_mixture(3, 1, 3)
    mu, cov = mix.means[0], mix.covs[0]
    x = torch.randn(1, 4, 3, dtype=torch.float64)
    for sigma in (0.0, 0.3, 1.0):
        c = (1 - sigma) ** 2 * cov + sigma**2 * torch.eye(3, dtype=torch.float64)
        r = x[0] - (1 - sigma) * mu
        ex0 = mu + ((1 - sigma) * cov @ torch.linalg.solve(c, r.T)).T
        eeps = (sigma * torch.linalg.solve(c, r.T)).T
        torch.testing.assert_close(gmm.velocity(mix, x, sigma)[0], eeps - ex0)
    # σ = 0: v = -E[x0|x] + 0 = -x ; σ = 1: v = x - μ
    torch.testing.assert_close(gmm.velocity(mix, x, 0.0), -x)
    torch.testing.assert_close(gmm.velocity(mix, x, 1.0), x - mu)


@given(seed=st.integers(0, 100), sigma=st.floats(0.0, 1.0))
def test_per_coordinate_levels_reduce_to_shared_level(seed, sigma):
    mix = random_mixture(seed, 2, 3)
    x = torch.randn(1, 4, 3, dtype=torch.float64)
    shared = gmm.velocity(mix, x, sigma)
    per = gmm.velocity(mix, x, torch.full((1, 4, 3), sigma, dtype=torch.float64))
    torch.testing.assert_close(per, shared, atol=1e-9, rtol=1e-7)


def test_per_coordinate_levels_match_monte_carlo():
    mix = random_mixture(5, 2, 2)
    levels = torch.tensor([0.3, 0.8], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x0, _ = gmm.sample(mix, 400_000, g)
    x = torch.tensor([[0.2, -0.5]], dtype=torch.float64)
    eps = (x - (1 - levels) * x0) / levels
    w = torch.softmax(-0.5 * (eps**2).sum(-1), 0)[:, None]
    mc = (w * (eps - x0)).sum(0)
    torch.testing.assert_close(gmm.velocity(mix, x[None], levels.reshape(1, 1, 2))[0, 0], mc, atol=0.05, rtol=0)


@given(seed=st.integers(0, 100))
def test_conditioning_matches_density_ratio(seed):
    """log p(free | obs) = log p(obs, free) - log p(obs), with marginals computed independently."""
    mix = random_mixture(seed, 3, 4)
    obs, free = torch.tensor([0, 2]), torch.tensor([1, 3])
    g = torch.Generator().manual_seed(seed)
    pts, _ = gmm.sample(mix, 6, g)
    cond = gmm.condition(mix, obs, pts[:, obs], free)
    lhs = gmm.log_prob(cond, pts[:, None, free])[:, 0]
    joint = gmm.log_prob(gmm.marginal(mix, torch.tensor([0, 1, 2, 3])), pts[None])[0]
    marg = gmm.log_prob(gmm.marginal(mix, obs), pts[None, :, obs])[0]
    torch.testing.assert_close(lhs, joint - marg, atol=1e-8, rtol=1e-8)


def test_moments_and_sampling_agree():
    mix = random_mixture(7, 3, 2)
    x, comp = gmm.sample(mix, 200_000, torch.Generator().manual_seed(0))
    mean, cov = gmm.moments(mix)
    torch.testing.assert_close(x.mean(0), mean, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.05, rtol=0.02)
    shares = torch.bincount(comp, minlength=3).double() / len(comp)
    torch.testing.assert_close(shares, mix.log_weights.exp(), atol=0.01, rtol=0)
    assert math.isfinite(float(gmm.log_prob(mix, x[None, :10]).sum()))


def test_mixture_validation():
    with pytest.raises(ValueError, match="covs"):
        gmm.Mixture(torch.zeros(2), torch.zeros(2, 3), torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match="means"):
        gmm.Mixture(torch.zeros(2), torch.zeros(3, 3), torch.eye(3).expand(2, 3, 3))
    mix = random_mixture(0, 2, 3)
    with pytest.raises(ValueError, match="x must be"):
        gmm.velocity(mix, torch.zeros(4, 3), 0.5)


@given(seed=st.integers(0, 100), k=st.integers(1, 3), d=st.integers(1, 3))
def test_log_prob_matches_scipy(seed, k, d):
    mix = random_mixture(seed, k, d)
    x = torch.randn(1, 6, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    w = mix.log_weights.exp().numpy()
    dens = sum(
        w[j] * multivariate_normal(mix.means[j].numpy(), mix.covs[j].numpy()).pdf(x[0].numpy()) for j in range(k)
    )
    np.testing.assert_allclose(gmm.log_prob(mix, x)[0].numpy(), np.log(dens).reshape(-1), rtol=1e-10)


def test_gmm_boundary_errors():
    mix = random_mixture(0, 2, 3)
    batched = gmm.Mixture(mix.log_weights.expand(4, -1), mix.means.expand(4, -1, -1), mix.covs)
    with pytest.raises(ValueError, match="unbatched"):
        gmm.sample(batched, 3)
    with pytest.raises(ValueError, match="unbatched"):
        gmm.moments(batched)
    with pytest.raises(ValueError, match=r"sigma must lie in \[0, 1\]"):
        gmm.noised(mix, 1.5)
    with pytest.raises(ValueError, match=r"values must be \[B, 1\]"):
        gmm.condition(mix, torch.tensor([0]), torch.zeros(4, 2, dtype=torch.float64), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"must not overlap, both contain \[1\]"):
        gmm.condition(mix, torch.tensor([0, 1]), torch.zeros(4, 2, dtype=torch.float64), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="log_weights"):
        gmm.Mixture(torch.zeros(3), mix.means, mix.covs)


def test_noised_moments_match_forward_process():
    # x_σ = (1-σ)x0 + σε: mean (1-σ)m, covariance (1-σ)^2 C + σ^2 I, for the whole mixture.
    data = shared_mode_mixture(3, 2, num_modes=3)
    sigma = 0.6
    mean, cov = gmm.moments(data.mixture)
    n_mean, n_cov = gmm.moments(gmm.noised(data.mixture, sigma))
    assert torch.allclose(n_mean, (1 - sigma) * mean)
    assert torch.allclose(n_cov, (1 - sigma) ** 2 * cov + sigma**2 * torch.eye(cov.shape[0], dtype=cov.dtype))
    gen = torch.Generator().manual_seed(0)
    x0, _ = gmm.sample(data.mixture, 200_000, gen)
    xs = (1 - sigma) * x0 + sigma * torch.randn(x0.shape, generator=gen, dtype=x0.dtype)
    assert torch.allclose(xs.T.cov(), n_cov, atol=0.01)


def test_sample_rows_follows_each_row():
    # Condition a 2-frame mixture on three different first frames: each row's draws follow its own mixture.
    data = shared_mode_mixture(2, 1, num_modes=2)
    observed, free = torch.tensor([0]), torch.tensor([1])
    values = torch.tensor([[-1.5], [1.5], [0.0]], dtype=torch.float64)
    cond = gmm.condition(data.mixture, observed, values, free)
    draws = gmm.sample_rows(cond, 50_000, torch.Generator().manual_seed(1))
    assert draws.shape == (3, 50_000, 1)
    w = cond.log_weights.exp()  # [3, K]
    mean = (w[..., None] * cond.means).sum(1)  # [3, 1]
    second = (w[..., None, None] * (cond.covs[None] + cond.means[..., :, None] * cond.means[..., None, :])).sum(1)
    var = second[..., 0, 0] - mean[:, 0] ** 2
    assert torch.allclose(draws.mean(dim=1), mean, atol=0.02)
    assert torch.allclose(draws.var(dim=1)[:, 0], var, rtol=0.03)


def test_sample_rows_unbatched_is_one_row():
    data = shared_mode_mixture(2, 1)
    assert gmm.sample_rows(data.mixture, 5).shape == (1, 5, 2)
