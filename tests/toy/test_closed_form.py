import pytest
import torch

from toy import closed_form
from toy.data import ar1_gaussian, shared_mode_mixture


def test_symmetric_root_squares_to_covariance():
    data = ar1_gaussian(4, 2, rho=0.8)
    cov = data.covariance()
    r = closed_form.symmetric_sqrt(cov)
    torch.testing.assert_close(r @ r, cov)
    torch.testing.assert_close(r, r.T)


def test_variance_split_of_the_causal_conditional_expectation():
    """Var(x0_i) = Var(E[x0_i | ε_≤i]) + E Var(x0_i | ε_≤i): closed forms against sample estimates."""
    data = ar1_gaussian(4, 2, rho=0.85)
    eps = torch.randn(200_000, 4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x0 = closed_form.joint_flow_map(data, eps)
    ce = closed_form.causal_conditional_expectation(data, eps)
    explained = ce.var(0).sum(-1)
    lost = (x0 - ce).pow(2).mean(0).sum(-1)  # E Var(x0_i | ε_≤i) = E||x0_i - E[x0_i|ε_≤i]||²
    torch.testing.assert_close(explained, closed_form.conditional_expectation_variance(data), atol=0.02, rtol=0.02)
    torch.testing.assert_close(lost, closed_form.lost_variance(data), atol=0.02, rtol=0.02)
    torch.testing.assert_close(
        closed_form.conditional_expectation_variance(data) + closed_form.lost_variance(data),
        closed_form.frame_variance(data),
    )
    assert float(closed_form.lost_variance(data)[-1]) == 0.0  # the last frame sees all the noise


def test_closed_forms_refuse_mixtures_and_samplers_not_starting_from_noise():
    with pytest.raises(ValueError, match="single Gaussian"):
        closed_form.joint_flow_map(shared_mode_mixture(3, 1, 2), torch.zeros(2, 3, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="sigmas\\[0\\] must be 1"):
        closed_form.few_step_sampler_moments(ar1_gaussian(3, 1), torch.tensor([0.9, 0.5], dtype=torch.float64))


def test_frame_variance_and_marginal_covariance_by_sampling():
    data = ar1_gaussian(3, 2, rho=0.7, std=0.8)
    g = torch.Generator().manual_seed(1)
    x0, _ = data.sample(100_000, g)
    torch.testing.assert_close(closed_form.frame_variance(data), x0.var(0).sum(-1), atol=0.02, rtol=0.02)
    xs = 0.6 * x0 + 0.4 * torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    torch.testing.assert_close(
        closed_form.marginal_covariance(data, 0.4), torch.cov(data.flatten(xs).T), atol=0.01, rtol=0
    )
