import math

import pytest
import torch
from torch import nn

from cf_ref.rollout import ar_ode_sample, few_step_rollout, sample_exit_steps
from cf_ref.schedule import few_step_sigmas, sigma_grid, velocity_from_x0
from cf_ref.solvers import Method
from toy import closed_form
from toy.data import ar1_gaussian


class Recorder(nn.Module):
    """v = θ·x + (mean of committed clean frames); logs every call's block and grad mode."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(0.5))
        self.calls: list[tuple[int, bool]] = []
        self.commits: list[tuple[int, bool, float]] = []

    def velocity(self, x, sigma, block, cache):
        self.calls.append((block, torch.is_grad_enabled()))
        ctx = torch.cat(cache, dim=1).mean() if cache else torch.zeros(())
        return self.theta * x + ctx

    def commit(self, x, sigma, block, cache):
        self.commits.append((block, x.requires_grad, float(sigma.max())))
        return [*cache, x]


def test_inference_rollout_runs_every_step_without_grad():
    m = Recorder()
    noise = torch.randn(2, 6, 3)
    out = few_step_rollout(m, noise, 2, few_step_sigmas((1000, 750, 500, 250), 5.0), [])
    assert out.x0.shape == (2, 6, 3) and out.exit_steps == (3, 3, 3)
    assert len(m.calls) == 3 * 4 and not any(grad for _, grad in m.calls)
    assert [b for b, _, _ in m.commits] == [0, 1, 2]


def test_training_rollout_gradient_flows_only_through_the_exit_step():
    m = Recorder()
    noise = torch.randn(2, 6, 3)
    out = few_step_rollout(m, noise, 2, few_step_sigmas((1000, 750, 500, 250), 5.0), [], exit_steps=[0, 2, 3])
    per_block = {b: [g for bb, g in m.calls if bb == b] for b in range(3)}
    assert per_block == {0: [True], 1: [False, False, True], 2: [False, False, False, True]}
    assert all(not requires_grad for _, requires_grad, _ in m.commits)  # cache writes are detached
    out.x0.sum().backward()
    assert m.theta.grad is not None


def test_single_step_equals_direct_x0_prediction_and_context_noise_level():
    m = Recorder()
    noise = torch.randn(1, 2, 3)
    out = few_step_rollout(m, noise, 1, torch.tensor([1.0]), [], context_noise=0.1)
    # block 0: v = θ ε, x0 = ε - θ ε
    torch.testing.assert_close(out.x0[:, 0], noise[:, 0] * (1 - 0.5))
    assert all(level == pytest.approx(0.1) for _, _, level in m.commits)


def test_rollout_is_deterministic_given_a_generator():
    def run():
        return few_step_rollout(
            Recorder(), torch.ones(1, 4, 2), 2, torch.tensor([1.0, 0.5]), [], generator=torch.Generator().manual_seed(7)
        ).x0

    torch.testing.assert_close(run(), run())


def test_ar_ode_sample_matches_a_closed_form_linear_flow():
    # v = θ x with θ = 0.5 and no context dependence for block 0: x(0) = e^{-θ} ε
    m = Recorder()
    noise = torch.randn(2, 1, 3, dtype=torch.float64)
    out = ar_ode_sample(m, noise, 1, sigma_grid(64).to(torch.float64), [], keep_at=[1.0, 0.5])
    out_rk = ar_ode_sample(Recorder().double(), noise, 1, sigma_grid(16), [], method=Method.RK4)
    torch.testing.assert_close(out_rk.x0, noise * torch.exp(torch.tensor(-0.5, dtype=torch.float64)), atol=1e-7, rtol=0)
    assert out.states.shape == (2, 2, 1, 3)


def test_rollout_validation():
    with pytest.raises(ValueError, match="does not divide"):
        few_step_rollout(Recorder(), torch.zeros(1, 5, 2), 2, torch.tensor([1.0]), [])
    with pytest.raises(ValueError, match="exit_steps"):
        few_step_rollout(Recorder(), torch.zeros(1, 4, 2), 2, torch.tensor([1.0]), [], exit_steps=[0, 1])


def test_exit_steps_sampling():
    g = torch.Generator().manual_seed(0)
    same = sample_exit_steps(5, 4, True, g)
    assert len(same) == 5 and len(set(same)) == 1
    draws = [tuple(sample_exit_steps(5, 4, False, g)) for _ in range(20)]
    assert any(len(set(d)) > 1 for d in draws) and all(0 <= s < 4 for d in draws for s in d)


def test_half_precision_states_get_float32_levels():
    seen = []

    class Probe(Recorder):
        def velocity(self, x, sigma, block, cache):
            seen.append(sigma.dtype)
            return torch.zeros_like(x)

    few_step_rollout(Probe(), torch.zeros(1, 2, 3, dtype=torch.bfloat16), 1, few_step_sigmas((1000, 750), 5.0), [])
    assert seen and all(d == torch.float32 for d in seen)


class LinearContextModel:
    """v = θ x + c_b, with c_b the mean of sample b's committed frames (0 before the first commit)."""

    theta = 0.7

    def velocity(self, x, sigma, block, cache):
        ctx = torch.cat(cache, dim=1).flatten(1).mean(dim=1) if cache else x.new_zeros(x.shape[0])
        return self.theta * x + ctx[:, None, None]

    def commit(self, x, sigma, block, cache):
        return [*cache, x]


def test_ar_ode_sample_blocks_follow_the_closed_form_given_their_context():
    # dx/dσ = θx + c from σ = 1: x(σ) = (ε + c/θ) e^{θ(σ-1)} - c/θ; block j's c is the mean of blocks < j.
    m = LinearContextModel()
    noise = torch.randn(3, 6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    keep = [1.0, 0.75, 0.5]
    out = ar_ode_sample(m, noise, 2, sigma_grid(32), [], method=Method.RK4, keep_at=keep)
    th, done = m.theta, []
    for j in range(3):
        c = torch.cat(done, dim=1).flatten(1).mean(dim=1)[:, None, None] if done else torch.zeros(3, 1, 1)
        eps = noise[:, 2 * j : 2 * j + 2]
        for k, s in enumerate(keep):
            exact = (eps + c / th) * math.exp(th * (s - 1)) - c / th
            torch.testing.assert_close(out.states[:, k, 2 * j : 2 * j + 2], exact, atol=1e-8, rtol=0)
        end = (eps + c / th) * math.exp(-th) - c / th
        torch.testing.assert_close(out.x0[:, 2 * j : 2 * j + 2], end, atol=1e-8, rtol=0)
        done.append(end)


class GaussianFlowMapStudent:
    """x̂0 = μ + A_σ (x - (1-σ)μ) on the whole sequence: the conditional-expectation student of toy.closed_form."""

    def __init__(self, data, sigmas):
        self.data = data
        self.mean = data.mixture.means[0]
        self.a = {float(s): closed_form.causal_regression_matrix(data, float(s)) for s in sigmas}

    def velocity(self, x, sigma, block, cache):
        s = float(sigma.flatten()[0])
        b = x.shape[1]
        span = slice(block * b * self.data.dim, (block + 1) * b * self.data.dim)
        a = self.a[s][span, span]  # frames of other blocks have zero weight when they are independent
        flat = self.data.flatten(x)
        x0 = self.mean[span] + (flat - (1 - s) * self.mean[span]) @ a.T
        return velocity_from_x0(x, self.data.unflatten(x0), s)

    def commit(self, x, sigma, block, cache):
        return cache


@pytest.mark.parametrize("rho,block_size", [(0.8, 3), (0.0, 1)])
def test_few_step_rollout_moments_match_the_closed_form_sampler(rho, block_size):
    """K = 3 steps with re-noising: sample moments against toy.closed_form.few_step_sampler_moments."""
    data = ar1_gaussian(num_frames=3, dim=1, rho=rho, std=0.6, drift=0.8)
    sigmas = few_step_sigmas((1000, 666, 333), shift=2.0)
    g = torch.Generator().manual_seed(4)
    noise = torch.randn(40_000, 3, 1, generator=g, dtype=torch.float64)
    out = few_step_rollout(GaussianFlowMapStudent(data, sigmas), noise, block_size, sigmas, [], generator=g).x0
    mean, cov = closed_form.few_step_sampler_moments(data, sigmas)
    flat = data.flatten(out)
    torch.testing.assert_close(flat.mean(0), data.flatten(mean), atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(flat.T), cov, atol=0.01, rtol=0.03)


def test_exit_steps_are_uniform_and_validated():
    g = torch.Generator().manual_seed(1)
    draws = torch.tensor([sample_exit_steps(1, 4, True, g)[0] for _ in range(8000)])
    torch.testing.assert_close(torch.bincount(draws, minlength=4) / 8000.0, torch.full((4,), 0.25), atol=0.02, rtol=0)
    with pytest.raises(ValueError, match="num_steps >= 1"):
        sample_exit_steps(3, 0)
    with pytest.raises(ValueError, match="num_blocks >= 1"):
        sample_exit_steps(0, 4, same_across_blocks=False)
