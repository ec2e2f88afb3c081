import torch

from toy import closed_form
from toy.data import ar1_gaussian


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
