import pytest
import torch
from scipy.stats import kstest

from cf_ref.distill.dmd import (
    critic_loss,
    data_context_samples,
    dmd_generator_loss,
    dmd_gradient,
    dmd_sigmas,
    dmd_surrogate_loss,
    score_on_grid,
    self_rollout_samples,
)
from cf_ref.granularity import Granularity, sample_indices
from cf_ref.schedule import few_step_sigmas, interpolate, unshift_sigma, velocity_from_x0, x0_from_velocity
from cf_ref.time_grid import train_grid


def _gaussian_score(mean: float):
    """Exact velocity of N(mean, 1) data: E[x0|x_σ] = μ + (1-σ)(x - (1-σ)μ) / ((1-σ)² + σ²)."""

    def field(x, sigma):
        s = sigma[..., None]
        c = (1 - s) ** 2 + s**2
        x0 = mean + (1 - s) * (x - (1 - s) * mean) / c
        return velocity_from_x0(x, x0, s[..., 0])

    return field


def test_dmd_gradient_formula():
    x, real, fake = torch.randn(3, 2, 4), torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    g = dmd_gradient(x, real, fake)
    for b in range(3):
        torch.testing.assert_close(g[b], (fake[b] - real[b]) / (x[b] - real[b]).abs().mean())


def test_surrogate_loss_gradient_is_g_over_numel():
    x = torch.randn(2, 3, 4, requires_grad=True)
    g = torch.randn(2, 3, 4)
    dmd_surrogate_loss(x, g).backward()
    torch.testing.assert_close(x.grad, g / x.numel())


def test_equal_scores_give_no_gradient():
    x = torch.randn(4, 2, 3, requires_grad=True)
    sigma = torch.full((4, 2), 0.5)
    score = _gaussian_score(0.0)
    loss, _ = dmd_generator_loss(x, score, score, sigma, torch.randn(4, 2, 3))
    loss.backward()
    assert float(x.grad.abs().max()) == 0.0


def test_dmd_step_moves_a_shifted_generator_towards_the_data():
    g = torch.Generator().manual_seed(0)
    offset = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)  # generator: x = offset + z, data: N(0, 1)
    opt = torch.optim.SGD([offset], lr=0.5)
    for _ in range(30):
        z = torch.randn(256, 1, 1, generator=g, dtype=torch.float64)
        x = offset + z
        sigma = torch.rand(256, 1, generator=g, dtype=torch.float64) * 0.96 + 0.02
        eps = torch.randn(256, 1, 1, generator=g, dtype=torch.float64)
        fake = _gaussian_score(float(offset.detach()))  # the ideal critic for the current generator
        loss, info = dmd_generator_loss(x, _gaussian_score(0.0), fake, sigma, eps)
        opt.zero_grad()
        (loss * x.numel() / len(x)).backward()  # = mean DMD gradient per sample
        opt.step()
    assert abs(float(offset.detach())) < 0.5  # started at 2.0


def test_generator_loss_gradient_and_diagnostics_match_gaussian_closed_form():
    """Real N(0, 1), fake N(m, 1): x̂0_real = (1-σ)x_σ/c, x̂0_fake - x̂0_real = m σ²/c with c = (1-σ)² + σ²."""
    g = torch.Generator().manual_seed(1)
    m = 0.8
    x = torch.randn(6, 2, 3, generator=g, dtype=torch.float64).requires_grad_()
    sigma = torch.rand(6, 2, generator=g, dtype=torch.float64) * 0.9 + 0.05
    eps = torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    loss, info = dmd_generator_loss(x, _gaussian_score(0.0), _gaussian_score(m), sigma, eps)
    loss.backward()
    s = sigma[..., None]
    c = (1 - s) ** 2 + s**2
    x_sigma = (1 - s) * x.detach() + s * eps
    real = (1 - s) * x_sigma / c
    gap = m * s**2 / c
    grad = gap.expand_as(x) / (x.detach() - real).abs().mean(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(x.grad, grad / x.numel())
    assert info["real_fake_gap"] == pytest.approx(float(gap.expand_as(x).mean()), rel=1e-9)
    assert info["dmd_grad_norm"] == pytest.approx(float(grad.norm()), rel=1e-6)


def test_critic_loss_trains_only_the_critic():
    x = torch.randn(8, 2, 3, requires_grad=True)
    w = torch.zeros((), requires_grad=True)
    loss = critic_loss(lambda xs, s: w * xs, x, torch.full((8, 2), 0.3), torch.randn(8, 2, 3))
    loss.backward()
    assert x.grad is None and w.grad is not None


def test_critic_loss_brute_force_and_its_minimiser_is_the_exact_score():
    g = torch.Generator().manual_seed(2)
    x, eps = (
        torch.randn(4, 2, 3, generator=g, dtype=torch.float64),
        torch.randn(4, 2, 3, generator=g, dtype=torch.float64),
    )
    sigma, w = torch.rand(4, 2, generator=g, dtype=torch.float64), torch.rand(4, 2, generator=g, dtype=torch.float64)
    loss = critic_loss(lambda xs, s: 0.5 * xs, x, sigma, eps, w)
    want = 0.0
    for b in range(4):
        for f in range(2):
            xs = (1 - sigma[b, f]) * x[b, f] + sigma[b, f] * eps[b, f]
            want += float(w[b, f] * ((0.5 * xs - (eps[b, f] - x[b, f])) ** 2).mean()) / 8
    assert float(loss) == pytest.approx(want, rel=1e-6)  # per_frame_mse computes in float32
    # on samples of N(0, 1) the exact velocity beats a perturbed one (it is the flow-matching minimiser)
    x = torch.randn(20_000, 1, 1, generator=g, dtype=torch.float64)
    eps = torch.randn(20_000, 1, 1, generator=g, dtype=torch.float64)
    sigma = torch.rand(20_000, 1, generator=g, dtype=torch.float64) * 0.9 + 0.05
    exact = float(critic_loss(_gaussian_score(0.0), x, sigma, eps))
    assert exact < float(critic_loss(_gaussian_score(0.3), x, sigma, eps)) - 0.01


def test_dmd_shape_errors():
    with pytest.raises(ValueError, match="shapes differ"):
        dmd_gradient(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4))


def test_dmd_sigmas_follow_the_clamped_shifted_uniform_law():
    """σ = clamp(shift(u), 0.02, 0.98): atoms at the bounds of mass unshift(0.02) and 1 - unshift(0.98), and the
    shifted-uniform CDF in between (the authors' DMD timestep rule)."""
    n, shift = 40_000, 5.0
    s = dmd_sigmas(n, 3, shift, 20.0, 980.0, generator=torch.Generator().manual_seed(0))
    assert s.shape == (n, 3) and s.dtype == torch.float32
    s = s.double()
    assert bool((s == s[:, :1]).all())  # one level per video
    s = s[:, 0]
    lo, hi = float(unshift_sigma(0.02, shift)), float(unshift_sigma(0.98, shift))
    assert float((s <= 0.02 + 1e-7).double().mean()) == pytest.approx(lo, abs=0.002)  # 0.4 %
    assert float((s >= 0.98 - 1e-7).double().mean()) == pytest.approx(1 - hi, abs=0.005)  # 9.3 %
    inner = s[(s > 0.02 + 1e-7) & (s < 0.98 - 1e-7)].numpy()
    cdf = lambda v: (unshift_sigma(torch.as_tensor(v), shift).numpy() - lo) / (hi - lo)  # noqa: E731
    assert kstest(inner, cdf).pvalue > 1e-3


def test_dmd_sigmas_keep_the_floor_of_the_full_track():
    """Not the old toy rule (u in [0.02, 0.98] before the shift, floor 0.093): the floor is t_min / 1000."""
    s = dmd_sigmas(20_000, 1, 5.0, 20.0, 980.0, generator=torch.Generator().manual_seed(1))
    assert float(s.min()) == pytest.approx(0.02) and float((s < 0.09).double().mean()) > 0.01


class _LinearBlocks:
    """v = a·x, ignoring the cache: the rollout's arithmetic can then be replayed by hand."""

    a = 0.6

    def velocity(self, x, sigma, block, cache):
        return self.a * x

    def commit(self, x, sigma, block, cache):
        cache.append((x.clone(), sigma.clone()))
        return cache


def test_self_rollout_samples_replay_by_hand():
    """Each block runs steps 0..exit of x̂0 = x - σ_k a x, re-noised with fresh draws from the generator."""
    noise = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigmas = few_step_sigmas((1000, 750, 500, 250), 5.0)
    exits = [3, 1]
    cache = []
    out = self_rollout_samples(
        _LinearBlocks(), noise, 2, sigmas, cache, exits, 0.1, generator=torch.Generator().manual_seed(5)
    )
    g = torch.Generator().manual_seed(5)
    for j, e in enumerate(exits):
        x = noise[:, 2 * j : 2 * j + 2]
        for k in range(e + 1):
            x0 = x - float(sigmas[k]) * 0.6 * x
            if k < e:
                x = interpolate(x0, torch.randn(x0.shape, generator=g, dtype=x0.dtype), float(sigmas[k + 1]))
        torch.testing.assert_close(out[:, 2 * j : 2 * j + 2], x0)
        committed = interpolate(x0, torch.randn(x0.shape, generator=g, dtype=x0.dtype), 0.1)  # context noise
        torch.testing.assert_close(cache[j][0], committed)
        torch.testing.assert_close(cache[j][1], torch.full((2, 2), 0.1, dtype=torch.float64))


def test_data_context_samples_brute_force():
    """x = (1-σ_k)x0 + σ_k ε per block, x̂0 = x - σ_k v(x, σ_k | x0), checked element by element."""
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(2, 2, 4, 3, generator=g, dtype=torch.float64)
    sigmas = torch.tensor([1.0, 0.9, 0.6], dtype=torch.float64)
    index = sample_indices(2, 4, 3, Granularity.BLOCK, block_size=2, generator=g)
    seen = []

    def teacher_forced(x, sigma):  # depends on the clean context: mean of x0 over all frames, per sample
        seen.append(sigma.clone())
        return 0.5 * x + x0.mean(dim=(1, 2), keepdim=True)

    out = data_context_samples(teacher_forced, x0, eps, sigmas, index)
    for b in range(2):
        for f in range(4):
            s = float(sigmas[index[b, f]])
            x = (1 - s) * x0[b, f] + s * eps[b, f]
            v = 0.5 * x + x0[b].mean(dim=(0, 1))
            torch.testing.assert_close(out[b, f], x - s * v)
    assert len(seen) == 1 and torch.equal(seen[0], sigmas[index])  # one teacher-forced call, per-block levels


def test_score_on_grid_reads_x0_and_the_critic_target_like_the_authors_wrapper():
    """utils/wan_wrapper.py: x0 = x - σ_grid[argmin |t_grid - t|]·v with the wrapper's shift-8 grid; model/dmd.py's
    critic then compares (x - x0)/σ with ε - x. Both against a brute-force nearest point; the network sees σ."""
    seen = []

    def score(x, sigma):
        seen.append(sigma)
        return 0.3 * x + sigma[..., None]

    grid = train_grid(8.0)
    x = torch.randn(2, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([[0.02] * 3, [0.61] * 3], dtype=torch.float64)
    v_grid = score_on_grid(score, grid)(x, sigma)
    assert seen[-1] is sigma
    points = grid.tolist()
    nearest = torch.tensor(
        [[min(points, key=lambda p: abs(1000 * p - 1000 * s)) for s in row] for row in sigma.tolist()]
    )
    expected_x0 = x - nearest[..., None].double() * score(x, sigma)
    torch.testing.assert_close(x0_from_velocity(x, v_grid, sigma), expected_x0)
    torch.testing.assert_close(v_grid, (x - expected_x0) / sigma[..., None])  # the critic's flow prediction
    assert not torch.allclose(v_grid, score(x, sigma))  # σ = 0.02 and 0.61 are off the shift-8 grid
    on_grid = grid[[10, 500]].reshape(2, 1).expand(2, 3)
    torch.testing.assert_close(score_on_grid(score, grid)(x, on_grid), score(x, on_grid))
    with pytest.raises(ValueError, match="σ > 0"):
        score_on_grid(score, grid)(x, torch.zeros(2, 3, dtype=torch.float64))
