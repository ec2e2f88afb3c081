"""toy.closed_form: the Gaussian closed forms against sample estimates, and the K-step conditional-expectation
sampler against simulation (integrate the exact bidirectional teacher, regress each frame's end point on the states
of frames <= i by least squares, run the K-step sampler with those regressions on fresh noise)."""

import pytest
import torch

from cf_ref.schedule import few_step_sigmas, sigma_grid, uniform_few_step_timesteps
from toy import closed_form
from toy.data import ar1_gaussian, shared_mode_mixture
from toy.teachers import BidirectionalTeacher


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


def test_one_step_is_the_conditional_expectation_variance():
    data = ar1_gaussian(4, 2)
    sig = few_step_sigmas(uniform_few_step_timesteps(1), 2.0)
    assert torch.allclose(
        closed_form.few_step_sampler_variance(data, sig), closed_form.conditional_expectation_variance(data)
    )
    a = closed_form.causal_regression_matrix(data, 1.0)
    r = closed_form.symmetric_sqrt(data.mixture.covs[0])
    lower = torch.kron(torch.tril(torch.ones(4, 4, dtype=torch.float64)), torch.ones(2, 2, dtype=torch.float64))
    assert torch.allclose(a, r * lower)


def _lstsq_regressions(data, states, target):
    """Per frame i: least-squares affine map from the states of frames <= i to x0_i. states: [n, F, d]."""
    out = []
    for i in range(data.num_frames):
        x = torch.cat([states[:, : i + 1].flatten(1), torch.ones(len(states), 1, dtype=states.dtype)], dim=1)
        out.append(torch.linalg.lstsq(x, target[:, i]).solution)
    return out


def _apply(data, regressions, x):
    cols = []
    for i, coef in enumerate(regressions):
        feats = torch.cat([x[:, : i + 1].flatten(1), torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
        cols.append(feats @ coef)
    return torch.stack(cols, dim=1)


def test_few_step_sampler_variance_matches_simulation():
    data = ar1_gaussian(3, 1, rho=0.8)
    shift = 2.0
    sigmas = few_step_sigmas(uniform_few_step_timesteps(3), shift)
    gen = torch.Generator().manual_seed(0)
    eps = torch.randn(40_000, 3, 1, generator=gen, dtype=torch.float64)
    traj = BidirectionalTeacher(data).flow_map(eps, sigma_grid(24, shift), keep_at=sigmas)
    regs = [_lstsq_regressions(data, traj.states[:, k], traj.end) for k in range(len(sigmas))]
    # the regression at each level is the closed-form matrix
    for k, s in enumerate(sigmas.tolist()):
        a = closed_form.causal_regression_matrix(data, s)
        for i in range(3):
            assert torch.allclose(regs[k][i][: i + 1, 0], a[i, : i + 1], atol=0.02)
    # run the sampler: x1 = ε, x0_k = f_k(x_k), x_{k+1} = (1-σ)x0_k + σε'
    x = torch.randn(40_000, 3, 1, generator=gen, dtype=torch.float64)
    for k in range(len(sigmas)):
        x0 = _apply(data, regs[k], x)
        if k + 1 < len(sigmas):
            nxt = float(sigmas[k + 1])
            x = (1 - nxt) * x0 + nxt * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    simulated = x0.var(dim=0).sum(-1)
    assert torch.allclose(simulated, closed_form.few_step_sampler_variance(data, sigmas), rtol=0.03)
