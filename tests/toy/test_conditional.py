"""toy.conditional: Monte Carlo conditional expectations of both pair teachers' pairs against the Gaussian closed forms."""

import torch

from cf_ref.recipes import PairTeacher
from toy import closed_form
from toy.conditional import bidirectional_statistics, causal_statistics, grid_from, joint_state_sampler
from toy.data import ar1_gaussian, shared_mode_mixture
from toy.pairs import GridConfig, make_pairs

GRID = GridConfig(teacher_steps=16, shift=2.0, student_steps=(4,))
COARSE = GridConfig(teacher_steps=8, shift=2.0, student_steps=(4,))  # RK4, 8 steps: ~1e-3 on a Gaussian


def test_bidirectional_at_noise_is_the_causal_conditional_expectation():
    # σ = 1: E[x0_i | ε_<=i] = μ_i + Σ_{j<=i} R_ij ε_j, lost variance Σ_{j>i} ||R_ij||².
    data = ar1_gaussian(4, 1)
    pairs = make_pairs(data, PairTeacher.BIDIRECTIONAL, 64, COARSE, torch.Generator().manual_seed(0))
    m = 64
    stats = bidirectional_statistics(data, pairs.states[:, 0], 1.0, COARSE, m, torch.Generator().manual_seed(1))
    expected = closed_form.causal_conditional_expectation(data, pairs.noise)
    mc_error = (stats.variance.mean() / m).sqrt()  # RMS standard error of a mean over M copies
    assert (stats.mean - expected).pow(2).mean().sqrt() < 1.3 * mc_error + 0.005
    assert torch.allclose(stats.index, closed_form.lost_variance(data) / closed_form.frame_variance(data), atol=0.06)


def test_bidirectional_at_intermediate_level_uses_the_noised_law():
    # σ < 1: the student reads the joint trajectory state of frames <= i; for a Gaussian the conditional
    # expectation is μ + A(x_σ - (1-σ)μ) with A = closed_form.causal_regression_matrix(σ).
    data = ar1_gaussian(3, 2)
    pairs = make_pairs(data, PairTeacher.BIDIRECTIONAL, 96, GRID, torch.Generator().manual_seed(2))
    k = 2
    sigma = float(pairs.sigmas[k])
    m = 64
    stats = bidirectional_statistics(data, pairs.states[:, k], sigma, GRID, m, torch.Generator().manual_seed(3))
    a = closed_form.causal_regression_matrix(data, sigma)
    mean = data.mixture.means[0]
    flat = data.flatten(pairs.states[:, k])
    expected = data.unflatten(mean + (flat - (1 - sigma) * mean) @ a.T)
    mc_error = (stats.variance.mean() / m).sqrt()
    assert (stats.mean - expected).pow(2).mean().sqrt() < 1.3 * mc_error + 0.005
    assert stats.index[-1] == 0 and stats.index[0] > 0.05


def test_joint_state_sampler_keeps_visible_frames():
    data = shared_mode_mixture(3, 2, num_modes=4)
    x = torch.randn(5, 3, 2, dtype=torch.float64)
    hidden = torch.tensor([False, True, True])
    copies = joint_state_sampler(data, 0.5)(x, hidden, 7, torch.Generator().manual_seed(4))
    assert copies.shape == (5, 7, 3, 2)
    assert torch.equal(copies[:, :, 0], x[:, None, 0].expand(5, 7, 2))
    assert not torch.equal(copies[:, 0, 1], copies[:, 1, 1])


def test_causal_pairs_are_injective_at_every_level():
    data = shared_mode_mixture(3, 1)
    pairs = make_pairs(data, PairTeacher.AR, 16, GRID, torch.Generator().manual_seed(5))
    for k in (0, 2):
        sigma = float(pairs.sigmas[k])
        stats = causal_statistics(
            data, pairs.states[:, k], sigma, pairs.context, GRID, 2, torch.Generator().manual_seed(6)
        )
        assert float(stats.index.max()) < 1e-10
        assert torch.allclose(stats.mean, pairs.target, atol=1e-9)  # continuing the same trajectory from σ_k


def test_grid_from_starts_at_the_level():
    tail = grid_from(GRID, float(GRID.student_sigmas(4)[2]))
    assert tail[0] == GRID.student_sigmas(4)[2] and tail[-1] == 0 and len(tail) == 9
