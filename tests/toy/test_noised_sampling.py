"""toy.gmm.noised / sample_rows against moments and Monte Carlo of the forward process."""

import torch

from toy import gmm
from toy.data import shared_mode_mixture


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
