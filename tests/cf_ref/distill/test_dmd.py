import pytest
import torch

from cf_ref.distill.dmd import critic_loss, dmd_generator_loss, dmd_gradient, dmd_surrogate_loss
from cf_ref.schedule import velocity_from_x0


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
