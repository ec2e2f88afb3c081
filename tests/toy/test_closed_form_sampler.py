"""Closed form of the K-step conditional-expectation sampler (toy.closed_form), checked by simulation.

Independent route: integrate the exact bidirectional teacher's PF-ODE, regress each frame's end point on the
states of frames <= i by least squares (the empirical conditional expectation of a Gaussian), and run the
K-step sampler with those regressions on fresh noise.
"""

import torch

from cf_ref.schedule import few_step_sigmas, sigma_grid, uniform_few_step_timesteps
from toy import closed_form
from toy.data import ar1_gaussian
from toy.teachers import BidirectionalTeacher


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
