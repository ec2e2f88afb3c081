import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cf_ref.injectivity import (
    conditional_expectation,
    conditional_moments,
    conditional_statistics,
    non_injectivity_index,
    resample_gaussian_noise,
)
from cf_ref.masks import block_causal_visibility
from toy import closed_form
from toy.data import ar1_gaussian, independent_gaussian, shared_mode_mixture
from toy.teachers import ARTeacher, BidirectionalTeacher

GRID_STEPS = 16


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_linear_causal_map_is_injective_and_anticausal_is_not():
    g = _gen(0)
    w = torch.tensor([[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.2, 0.3, 1.0]], dtype=torch.float64)
    eps = torch.randn(256, 3, 1, generator=g, dtype=torch.float64)
    vis = block_causal_visibility(3)
    causal = non_injectivity_index(lambda u: torch.einsum("ij,bmjd->bmid", w, u), eps, vis, 16, generator=g)
    assert causal.abs().max() < 1e-12
    # x0 = W^T ε: frame 0 = ε0 + 0.5 ε1 + 0.2 ε2 — the index is the hidden share of the variance
    anti = non_injectivity_index(lambda u: torch.einsum("ji,bmjd->bmid", w, u), eps, vis, 64, generator=g)
    exact0 = (0.25 + 0.04) / (1 + 0.25 + 0.04)
    assert float(anti[0]) == pytest.approx(exact0, abs=0.04)
    assert float(anti[2]) == pytest.approx(0.0, abs=1e-12)


@given(rho=st.floats(0.6, 0.95), dim=st.integers(1, 2), seed=st.integers(0, 50))
def test_index_bidirectional_gaussian_matches_closed_form(rho, dim, seed):
    data = ar1_gaussian(num_frames=3, dim=dim, rho=rho)
    teacher = BidirectionalTeacher(data)
    g = _gen(seed)
    eps = torch.randn(128, 3, dim, generator=g, dtype=torch.float64)
    eta = non_injectivity_index(
        lambda u: closed_form.joint_flow_map(data, u), eps, block_causal_visibility(3), 48, generator=g
    )
    exact = closed_form.lost_variance(data) / closed_form.frame_variance(data)
    torch.testing.assert_close(eta, exact, atol=0.06, rtol=0.15)
    assert float(eta[0]) > 0.05  # correlated frames break injectivity
    # the teacher's numerical flow map gives the same index as its closed form
    small = eps[:16]
    eta_ode = non_injectivity_index(
        lambda u: teacher.flow_map(u, grid=None).end, small, block_causal_visibility(3), 8, generator=_gen(seed)
    )
    eta_cf = non_injectivity_index(
        lambda u: closed_form.joint_flow_map(data, u), small, block_causal_visibility(3), 8, generator=_gen(seed)
    )
    torch.testing.assert_close(eta_ode, eta_cf, atol=1e-5, rtol=0)


@pytest.mark.parametrize("make", [lambda: ar1_gaussian(3, 2), lambda: shared_mode_mixture(3, 1, 3)])
def test_index_of_ar_teacher_pairs_is_zero(make):
    data = make()
    g = _gen(1)
    eps = torch.randn(64, 3, data.dim, generator=g, dtype=torch.float64)
    context, _ = data.sample(64, g)
    ar = ARTeacher(data)
    eta = non_injectivity_index(
        lambda u: ar.flow_map(u, context).end, eps, torch.eye(3, dtype=torch.bool), 8, generator=g
    )
    assert float(eta.abs().max()) < 1e-3


def test_index_bidirectional_independent_frames_is_zero_and_teachers_coincide():
    data = independent_gaussian(3, 2)
    g = _gen(2)
    eps = torch.randn(64, 3, 2, generator=g, dtype=torch.float64)
    bi = BidirectionalTeacher(data)
    eta = non_injectivity_index(lambda u: bi.flow_map(u).end, eps, block_causal_visibility(3), 8, generator=g)
    assert float(eta.abs().max()) < 1e-3
    context, _ = data.sample(64, g)
    torch.testing.assert_close(bi.flow_map(eps).end, ARTeacher(data).flow_map(eps, context).end, atol=1e-6, rtol=0)


def test_index_bidirectional_mixture_is_large():
    data = shared_mode_mixture(3, 1, 2)
    g = _gen(3)
    eps = torch.randn(64, 3, 1, generator=g, dtype=torch.float64)
    bi = BidirectionalTeacher(data)
    eta = non_injectivity_index(lambda u: bi.flow_map(u).end, eps, block_causal_visibility(3), 16, generator=g)
    assert float(eta[0]) > 0.3 and float(eta[-1]) < 1e-6


@given(seed=st.integers(0, 50))
def test_monte_carlo_conditional_expectation_matches_gaussian_closed_form(seed):
    data = ar1_gaussian(num_frames=4, dim=1, rho=0.9)
    g = _gen(seed)
    eps = torch.randn(8, 4, 1, generator=g, dtype=torch.float64)
    mc = conditional_expectation(
        lambda u: closed_form.joint_flow_map(data, u), eps, block_causal_visibility(4), 4000, generator=g
    )
    exact = closed_form.causal_conditional_expectation(data, eps)
    torch.testing.assert_close(mc, exact, atol=0.06, rtol=0)


def test_resampler_keeps_visible_frames_and_redraws_hidden():
    x = torch.arange(2 * 3 * 1, dtype=torch.float64).reshape(2, 3, 1)
    out = resample_gaussian_noise(x, torch.tensor([False, True, False]), 5, _gen(0))
    assert out.shape == (2, 5, 3, 1)
    assert bool((out[:, :, 0] == x[:, None, 0]).all()) and bool((out[:, :, 2] == x[:, None, 2]).all())
    assert float(out[:, :, 1].std()) > 0.1


def test_bad_visibility_is_rejected():
    with pytest.raises(ValueError, match="visibility"):
        non_injectivity_index(lambda u: u, torch.zeros(4, 3, 1), torch.ones(2, 2, dtype=torch.bool), 4)
    with pytest.raises(ValueError, match="num_resamples"):
        non_injectivity_index(lambda u: u, torch.zeros(4, 3, 1), torch.ones(3, 3, dtype=torch.bool), 1)


def test_resampled_hidden_frames_are_standard_normal_and_fresh_per_copy():
    x = torch.full((4, 3, 2), 7.0, dtype=torch.float64)
    out = resample_gaussian_noise(x, torch.tensor([True, False, True]), 5000, _gen(1))
    hidden = out[:, :, [0, 2]]
    assert abs(float(hidden.mean())) < 0.02 and float(hidden.var()) == pytest.approx(1.0, abs=0.03)
    corr = torch.corrcoef(torch.stack([hidden[:, :2500].flatten(), hidden[:, 2500:].flatten()]))[0, 1]
    assert abs(float(corr)) < 0.03  # different copies are independent draws
    assert bool((out[:, :, 1] == 7.0).all())


def test_conditional_moments_of_a_linear_map_match_closed_form():
    # x0 = W u with u ~ N(0, I), frame 1 hidden: E[x0 | u_0] = W[:, 0] u_0, Var = W[:, 1]².
    w = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=torch.float64)
    u = torch.randn(8, 2, 1, generator=_gen(2), dtype=torch.float64)
    mean, var, samples = conditional_moments(
        lambda c: torch.einsum("ij,bmjd->bmid", w, c), u, torch.tensor([True, False]), 4000, generator=_gen(3)
    )
    assert samples.shape == (8, 4000, 2, 1)
    torch.testing.assert_close(mean, w[:, :1] * u[:, :1], atol=0.1, rtol=0)
    torch.testing.assert_close(var[..., 0], w[:, 1].pow(2).expand(8, 2), atol=0, rtol=0.1)


def test_frame_sets_must_be_bool_masks_over_the_frames():
    u = torch.zeros(4, 3, 1)
    with pytest.raises(ValueError, match=r"visible must be a bool \[F\] = \[3\]"):
        conditional_moments(lambda c: c, u, torch.tensor([1, 1, 0]), 4)
    with pytest.raises(ValueError, match=r"visible must be a bool \[F\] = \[3\]"):
        conditional_moments(lambda c: c, u, torch.tensor([True, False]), 4)
    with pytest.raises(ValueError, match=r"hidden must be a bool"):
        resample_gaussian_noise(u, torch.tensor([0, 1, 0]), 4)


# conditional_statistics against a linear teacher with Gaussian inputs (closed form)


def _linear_teacher(a: torch.Tensor):
    """x0_i = sum_j a[i, j] u_j for inputs u: [..., F, 1]."""

    def teacher_map(u: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,...jd->...id", a, u)

    return teacher_map


def test_linear_teacher_matches_closed_form():
    # u ~ N(0, I): E[x0_i | u_<=i] = sum_{j<=i} a_ij u_j, Var = sum_{j>i} a_ij^2, eta_i = Var / sum_j a_ij^2.
    gen = torch.Generator().manual_seed(0)
    f = 4
    a = torch.tensor([[1.0, 0.8, 0.5, 0.2], [0.3, 1.0, 0.6, 0.4], [0.1, 0.2, 1.0, 0.9], [0.5, 0.5, 0.5, 0.5]])
    a = a.double()
    u = torch.randn(256, f, 1, generator=gen, dtype=torch.float64)
    vis = block_causal_visibility(f)
    stats = conditional_statistics(_linear_teacher(a), u, vis, 400, generator=gen)
    lower = torch.tril(a)
    expected_mean = torch.einsum("ij,bjd->bid", lower, u)
    hidden_var = (a - lower).pow(2).sum(dim=1)
    assert torch.allclose(stats.mean, expected_mean, atol=0.3)  # MC standard error <= sqrt(0.9 / 400) ≈ 0.05
    assert (stats.mean - expected_mean).pow(2).mean().sqrt() < 0.06
    assert torch.allclose(stats.variance.mean(dim=(0, 2)), hidden_var, rtol=0.1, atol=1e-12)
    assert torch.allclose(stats.index, hidden_var / a.pow(2).sum(dim=1), atol=0.05)
    # the last frame sees everything: exact, no resampling
    assert torch.allclose(stats.mean[:, -1], torch.einsum("j,bjd->bd", a[-1], u), atol=1e-12)
    assert stats.index[-1] == 0 and bool((stats.variance[:, -1] == 0).all())


def test_halves_agree_with_wrappers():
    f = 3
    a = torch.randn(f, f, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    u = torch.randn(32, f, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    vis = block_causal_visibility(f)
    stats = conditional_statistics(_linear_teacher(a), u, vis, 16, generator=torch.Generator().manual_seed(3))
    mean = conditional_expectation(_linear_teacher(a), u, vis, 16, generator=torch.Generator().manual_seed(3))
    eta = non_injectivity_index(_linear_teacher(a), u, vis, 16, generator=torch.Generator().manual_seed(3))
    assert torch.equal(stats.mean, mean)
    assert torch.equal(stats.index, eta)
