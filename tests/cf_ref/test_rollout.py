import math

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from cf_ref.rollout import CacheGradient, ar_ode_sample, few_step_rollout, sample_exit_steps, with_exit_gradient
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


class TinyAttention:
    """One attention layer as a BlockwiseModel over a K/V cache, ``x [B, b, d]`` tokens = frames.

    ``cache="in-place"`` is the authors' scheme transcribed (wan/modules/causal_model.py): a preallocated K/V buffer
    that *every* call writes in place at the block's slot before attending over the buffer up to the block's end;
    grad-enabled calls run under non-reentrant checkpointing (their ``gradient_checkpointing: true``), or read a
    copy of the buffer (``read_copy``: their fp32 path, where ``attention`` casts K/V to bf16 — a copy). Otherwise
    the cache is a list of committed K/V and ``leak`` chooses what they carry (:func:`with_exit_gradient`).
    """

    def __init__(self, d=4, inplace=False, read_copy=False, leak=CacheGradient.NONE, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.w = {n: torch.randn(d, d, generator=g, dtype=torch.float64, requires_grad=True) for n in "qkvo"}
        self.time = torch.randn(d, generator=g, dtype=torch.float64, requires_grad=True)
        self.inplace, self.read_copy, self.leak = inplace, read_copy, leak

    def params(self):
        return [*self.w.values(), self.time]

    def qkv(self, x, sigma):
        h = x + sigma[..., None] * self.time
        return h @ self.w["q"], h @ self.w["k"], h @ self.w["v"]

    def attend(self, q, k, v):
        return torch.softmax(q @ k.transpose(1, 2), -1) @ v @ self.w["o"]

    def _inplace_call(self, x, sigma, block, cache):
        q, k, v = self.qkv(x, sigma)
        a, e = block * x.shape[1], (block + 1) * x.shape[1]
        cache["k"][:, a:e], cache["v"][:, a:e] = k, v
        keys, values = cache["k"][:, :e], cache["v"][:, :e]
        if self.read_copy:
            keys, values = keys.clone(), values.clone()
        return self.attend(q, keys, values)

    def velocity(self, x, sigma, block, cache):
        if self.inplace:
            if torch.is_grad_enabled() and not self.read_copy:
                return checkpoint(self._inplace_call, x, sigma, block, cache, use_reentrant=False)
            return self._inplace_call(x, sigma, block, cache)
        q, k, v = self.qkv(x, sigma)
        if torch.is_grad_enabled():
            cache["exit"] = (k, v)
        return self.attend(q, torch.cat([*cache["k"], k], 1), torch.cat([*cache["v"], v], 1))

    def commit(self, x, sigma, block, cache):
        if self.inplace:
            self._inplace_call(x, sigma, block, cache)
            return cache
        _, k, v = self.qkv(x, sigma)
        exit_kv = cache.pop("exit", None)
        if self.leak is CacheGradient.PUBLISHED_LEAK and exit_kv is not None:
            k, v = with_exit_gradient(k, exit_kv[0]), with_exit_gradient(v, exit_kv[1])
        cache["k"].append(k)
        cache["v"].append(v)
        return cache

    def new_cache(self, shape):
        if self.inplace:
            return {"k": torch.zeros(shape, dtype=torch.float64), "v": torch.zeros(shape, dtype=torch.float64)}
        return {"k": [], "v": []}


def _tiny_rollout(model, exits, context_noise=0.0):
    """Samples of a 3-block rollout of ``model`` and the gradient of a fixed linear loss of them (weights, time
    vector, and the noise of block 0, whose exit call at step 0 sees that noise)."""
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(2, 6, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    w = torch.randn(2, 6, 4, generator=g, dtype=torch.float64)
    sigmas = torch.tensor([1.0, 0.8, 0.5, 0.2], dtype=torch.float64)
    out = few_step_rollout(model, noise, 2, sigmas, model.new_cache((2, 6, 4)), exits, context_noise, g).x0
    later = (out[:, 2:] * w[:, 2:]).sum()  # blocks 1 and 2 only
    grads = torch.autograd.grad(later, [noise, *model.params()], allow_unused=True)
    noise_grad = torch.zeros_like(noise) if grads[0] is None else grads[0]
    return out.detach(), noise_grad[:, :2], torch.cat([p.flatten() for p in grads[1:]])


@pytest.mark.parametrize("read_copy", [False, True])
@pytest.mark.parametrize("exits", [[0, 0, 0], [2, 2, 2], [1, 3, 0]])
def test_exit_gradient_cache_reproduces_the_authors_in_place_cache_exactly(exits, read_copy):
    """The straight-through cache (clean values, exit-call gradient) gives the in-place scheme's samples and
    gradients to the last bit; the method's cache gives the same samples and a different gradient."""
    out_inplace, noise_inplace, grad_inplace = _tiny_rollout(TinyAttention(inplace=True, read_copy=read_copy), exits)
    out_leak, noise_leak, grad_leak = _tiny_rollout(TinyAttention(leak=CacheGradient.PUBLISHED_LEAK), exits)
    out_none, noise_none, grad_none = _tiny_rollout(TinyAttention(), exits)
    assert torch.equal(out_leak, out_inplace) and torch.equal(out_none, out_inplace)  # forward identical
    assert torch.equal(grad_leak, grad_inplace) and torch.equal(noise_leak, noise_inplace)
    assert (grad_none - grad_inplace).norm() > 0.05 * grad_inplace.norm()
    # block 0's exit call sees its noise only at step 0: later blocks reach it through the cache only when leaking
    assert torch.count_nonzero(noise_none) == 0
    assert (torch.count_nonzero(noise_leak) > 0) == (exits[0] == 0)


def test_with_exit_gradient_value_gradient_and_shape_check():
    committed = torch.randn(2, 3, dtype=torch.float64)
    e = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        c = with_exit_gradient(committed, e)
    assert torch.equal(c, committed) and c.requires_grad
    w = torch.randn(2, 3, dtype=torch.float64)
    (grad,) = torch.autograd.grad((c * w).sum(), e)
    assert torch.equal(grad, w)
    with pytest.raises(ValueError, match="shapes differ"):
        with_exit_gradient(committed, e[:1])


def test_first_block_on_its_own_list_then_the_students():
    """Causal Forcing++'s 1-step student: block 0 on the 4-step list (exit steps counted on it), the other blocks on
    one step; equal to block 0 rolled out alone on the 4-step list, then the rest on the 1-step list over the same
    cache (the closed-form linear-context model, no renoising draws differ: one generator each, same seed)."""
    four, one = few_step_sigmas((1000, 750, 500, 250), 5.0), torch.tensor([1.0])
    noise = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(0))
    m = LinearContextModel()
    out = few_step_rollout(m, noise, 2, one, [], first_sigmas=four, generator=torch.Generator().manual_seed(1))
    assert out.exit_steps == (3, 0, 0)
    g = torch.Generator().manual_seed(1)
    first = few_step_rollout(m, noise[:, :2], 2, four, [], generator=g)
    cache = [first.x0]
    rest = []
    for j in (1, 2):
        x = noise[:, 2 * j : 2 * j + 2]
        rest.append(x - 1.0 * m.velocity(x, None, j, cache))
        cache.append(rest[-1])
    torch.testing.assert_close(out.x0, torch.cat([first.x0, *rest], dim=1))
    rec = Recorder()
    few_step_rollout(rec, noise, 2, one, [], exit_steps=[2, 0, 0], first_sigmas=four)
    assert [b for b, _ in rec.calls] == [0, 0, 0, 1, 2]
    with pytest.raises(ValueError, match=r"one step in \[0, 1\), \[0, 4\) per block"):
        few_step_rollout(rec, noise, 2, one, [], exit_steps=[0, 1, 0], first_sigmas=four)
