import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from cf_ref.schedule import broadcast_sigma, sigma_grid
from cf_ref.solvers import ORDER, Method, classifier_free_guidance, guided, guided_velocity, integrate, step
from toy.data import shared_mode_mixture
from toy.teachers import BidirectionalTeacher


def _linear_problem(seed: int, dim: int = 3):
    g = torch.Generator().manual_seed(seed)
    a = 0.8 * torch.randn(dim, dim, generator=g, dtype=torch.float64)
    x1 = torch.randn(2, dim, generator=g, dtype=torch.float64)
    exact = x1 @ torch.from_numpy(expm(-a.numpy())).T  # integrate from σ=1 to σ=0: x(0) = e^{-A} x(1)
    return (lambda x, s: x @ a.T), x1, exact


@pytest.mark.parametrize("method", list(Method))
@given(seed=st.integers(0, 200))
def test_solver_converges_at_its_order(method, seed):
    field, x1, exact = _linear_problem(seed)
    errs = []
    for n in (8, 16, 32):
        end = integrate(field, x1, torch.linspace(1, 0, n + 1, dtype=torch.float64), method).end
        errs.append(float((end - exact).norm()))
    observed = np.log2(errs[1] / errs[2])
    assert ORDER[method] - 0.35 < observed < ORDER[method] + 0.6, (errs, observed)


def test_solvers_on_nonuniform_grid_and_reverse_direction():
    field, x1, exact = _linear_problem(3)
    grid = sigma_grid(64, shift=3.0)  # shifted, non-uniform
    end = integrate(field, x1, grid, Method.RK4).end
    torch.testing.assert_close(end, exact, atol=1e-7, rtol=0)
    back = integrate(field, end, grid.flip(0), Method.RK4).end  # σ: 0 -> 1 recovers the start
    torch.testing.assert_close(back, x1, atol=1e-7, rtol=0)


def test_rk4_matches_scipy_on_exact_mixture_flow():
    data = shared_mode_mixture(num_frames=3, dim=2, num_modes=3)
    teacher = BidirectionalTeacher(data)
    eps = torch.randn(3, 3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = integrate(teacher.velocity, eps, sigma_grid(96, shift=2.0), Method.RK4).end
    for b in range(3):

        def rhs(s, y):
            x = torch.from_numpy(y).reshape(1, 3, 2)
            return teacher.velocity(x, torch.tensor(s, dtype=torch.float64)).reshape(-1).numpy()

        ref = solve_ivp(rhs, (1.0, 0.0), eps[b].reshape(-1).numpy(), method="DOP853", rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(ours[b].reshape(-1).numpy(), ref.y[:, -1], atol=2e-6)


def test_keep_at_returns_states_on_the_grid():
    field, x1, _ = _linear_problem(5)
    grid = sigma_grid(48, shift=5.0)
    keep = grid[[0, 12, 24, 36]]
    traj = integrate(field, x1, grid, Method.EULER, keep_at=keep)
    assert traj.states.shape == (2, 4, 3)
    torch.testing.assert_close(traj.states[:, 0], x1)
    part = integrate(field, x1, grid[:25], Method.EULER).end  # the state at index 24
    torch.testing.assert_close(traj.states[:, 2], part)
    torch.testing.assert_close(traj.sigmas, keep)
    with pytest.raises(ValueError, match="not on the 48-step grid"):
        integrate(field, x1, grid, keep_at=[0.123])


def test_grid_validation():
    field, x1, _ = _linear_problem(0)
    with pytest.raises(ValueError, match="monotone"):
        integrate(field, x1, torch.tensor([1.0, 0.5, 0.7, 0.0]))
    with pytest.raises(ValueError, match="at least 2"):
        integrate(field, x1, torch.tensor([1.0]))


def test_classifier_free_guidance():
    c, u = torch.tensor([2.0]), torch.tensor([1.0])
    assert float(classifier_free_guidance(c, u, 1.0)) == 2.0
    assert float(classifier_free_guidance(c, u, 0.0)) == 1.0
    assert float(classifier_free_guidance(c, u, 6.0)) == 7.0


@pytest.mark.parametrize("method", list(Method))
def test_step_with_per_frame_levels_steps_each_frame_on_its_own(method):
    # dx/dσ = -σ x per frame: x(σ') = x(σ) exp(-(σ'² - σ²)/2); each frame takes its own step σ_bf -> σ'_bf.
    def field(x, sigma):
        return -broadcast_sigma(sigma, x) * x

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    sigma = torch.rand(2, 3, generator=g, dtype=torch.float64) * 0.5 + 0.5
    sigma_next = sigma - 1e-3 * (1 + torch.arange(3, dtype=torch.float64))
    out = step(field, x, sigma, sigma_next, method)
    exact = x * torch.exp(-(sigma_next**2 - sigma**2) / 2)[..., None]
    local_error = {Method.EULER: 2e-5, Method.HEUN: 2e-8, Method.RK4: 1e-11}[method]  # O(h^(p+1)), h <= 3e-3
    torch.testing.assert_close(out, exact, atol=local_error, rtol=0)
    for b in range(2):
        for f in range(3):
            alone = step(field, x[b : b + 1, f : f + 1], sigma[b, f], sigma_next[b, f], method)
            torch.testing.assert_close(out[b : b + 1, f : f + 1], alone, atol=1e-15, rtol=0)


@given(seed=st.integers(0, 100), scale=st.floats(0.0, 8.0), per_frame=st.booleans())
def test_guided_velocity_is_cfg_of_two_separate_linear_models(seed, scale, per_frame):
    # paired model: rows [0, B) use A_c (conditional), rows [B, 2B) use A_u, each scaled by its own σ
    g = torch.Generator().manual_seed(seed)
    a_c, a_u = torch.randn(2, 3, 3, generator=g, dtype=torch.float64)
    x = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    sigma = torch.rand(2, 4, generator=g, dtype=torch.float64) if per_frame else torch.tensor(0.3, dtype=torch.float64)
    calls = []

    def paired(xx, ss):
        calls.append(xx.shape[0])
        half = xx.shape[0] // 2
        return torch.cat([xx[:half] @ a_c.T, xx[half:] @ a_u.T]) * broadcast_sigma(ss, xx)

    s = broadcast_sigma(sigma, x)
    expected = (x @ a_u.T) * s + scale * ((x @ a_c.T) * s - (x @ a_u.T) * s)
    torch.testing.assert_close(guided_velocity(paired, x, sigma, scale), expected)
    torch.testing.assert_close(guided(paired, scale)(x, sigma), expected)
    assert calls == [4, 4]  # one batched call of 2B rows per evaluation
