import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cf_ref import schedule as sch

sigmas = st.floats(0.01, 0.99)


@given(sigma=sigmas, b=st.integers(1, 3), f=st.integers(1, 4), seed=st.integers(0, 1000))
def test_conversions_round_trip(sigma, b, f, seed):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(b, f, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(b, f, 3, generator=g, dtype=torch.float64)
    x = sch.interpolate(x0, eps, sigma)
    v = sch.velocity_target(x0, eps)
    torch.testing.assert_close(sch.x0_from_velocity(x, v, sigma), x0)
    torch.testing.assert_close(sch.eps_from_velocity(x, v, sigma), eps)
    torch.testing.assert_close(sch.velocity_from_x0(x, x0, sigma), v)
    torch.testing.assert_close(sch.velocity_from_eps(x, eps, sigma), v)
    for src, val in [(sch.Prediction.X0, x0), (sch.Prediction.EPSILON, eps), (sch.Prediction.VELOCITY, v)]:
        for dst, want in [(sch.Prediction.X0, x0), (sch.Prediction.EPSILON, eps), (sch.Prediction.VELOCITY, v)]:
            torch.testing.assert_close(sch.convert_prediction(x, val, sigma, src, dst), want)


def test_velocity_is_time_derivative_of_path():
    g = torch.Generator().manual_seed(0)
    x0, eps = (
        torch.randn(2, 3, 4, generator=g, dtype=torch.float64),
        torch.randn(2, 3, 4, generator=g, dtype=torch.float64),
    )
    h, s = 1e-6, 0.37
    fd = (sch.interpolate(x0, eps, s + h) - sch.interpolate(x0, eps, s - h)) / (2 * h)
    torch.testing.assert_close(fd, sch.velocity_target(x0, eps), atol=1e-8, rtol=0)


def test_per_frame_sigma_broadcasts_per_frame():
    x0, eps = torch.zeros(2, 3, 4, 5), torch.ones(2, 3, 4, 5)
    sigma = torch.tensor([[0.1, 0.5, 0.9], [0.0, 1.0, 0.3]])
    x = sch.interpolate(x0, eps, sigma)
    torch.testing.assert_close(x[..., 0, 0], sigma)
    torch.testing.assert_close(sch.sigma_per_frame(0.3, x0), torch.full((2, 3), 0.3))
    torch.testing.assert_close(sch.sigma_per_frame(torch.tensor([0.1, 0.2]), x0)[:, 2], torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="prefix"):
        sch.broadcast_sigma(torch.zeros(3), x0)
    with pytest.raises(ValueError, match="same shape"):
        sch.interpolate(x0, eps[:, :2], 0.5)


@given(sigma=st.floats(0.0, 1.0), shift=st.floats(0.2, 10.0))
def test_shift_is_a_bijection(sigma, shift):
    s = sch.shift_sigma(sigma, shift)
    assert 0.0 <= float(s) <= 1.0 + 1e-12
    assert float(sch.unshift_sigma(s, shift)) == pytest.approx(sigma, abs=1e-12)


def test_shift_matches_wan_formula_and_endpoints():
    s = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(sch.shift_sigma(s, 5.0), 5 * s / (1 + 4 * s))
    assert float(sch.shift_sigma(1.0, 5.0)) == 1.0 and float(sch.shift_sigma(0.0, 5.0)) == 0.0
    assert bool((sch.shift_sigma(s, 5.0) >= s).all())  # shift > 1 moves towards noise
    with pytest.raises(ValueError):
        sch.shift_sigma(0.5, 0.0)


def test_timestep_sigma_scale():
    assert float(sch.timestep_from_sigma(0.25)) == 250.0
    assert float(sch.sigma_from_timestep(750)) == 0.75


def test_few_step_list_sits_on_the_teacher_grid():
    # published: 48 Euler steps, states kept at indices 0, 12, 24, 36 = student list 1000/750/500/250 shifted
    grid = sch.sigma_grid(48, shift=5.0)
    few = sch.few_step_sigmas((1000, 750, 500, 250), shift=5.0)
    torch.testing.assert_close(few, grid[[0, 12, 24, 36]])
    torch.testing.assert_close(few, torch.tensor([1.0, 0.9375, 2.5 / 3, 0.625], dtype=torch.float64))
    assert sch.uniform_few_step_timesteps(4) == (1000, 750, 500, 250)
    assert grid[0] == 1 and grid[-1] == 0 and bool((grid[1:] < grid[:-1]).all())
    with pytest.raises(ValueError, match="decreasing"):
        sch.few_step_sigmas((500, 750))


def test_boundary_errors_name_what_was_expected():
    x = torch.zeros(2, 3, 1)
    with pytest.raises(ValueError, match=r"\[B, F, \*S\]"):
        sch.sigma_per_frame(0.5, torch.zeros(4))
    with pytest.raises(ValueError, match="per frame"):
        sch.sigma_per_frame(torch.zeros(3), x)
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        sch.sigma_grid(0)
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        sch.uniform_few_step_timesteps(0)
    with pytest.raises(ValueError, match=r"lie in \(0, 1000\]"):
        sch.few_step_sigmas((1200, 500))
    with pytest.raises(ValueError, match="non-empty"):
        sch.few_step_sigmas(())
    with pytest.raises(ValueError, match="shift must be > 0"):
        sch.unshift_sigma(0.5, -1.0)


def test_choices_must_be_enum_members_not_strings():
    x = torch.zeros(1, 2, 1)
    with pytest.raises(ValueError, match="Prediction"):
        sch.convert_prediction(x, x, 0.5, "x0", sch.Prediction.VELOCITY)  # was silently read as ε


def test_published_few_step_schedule_sits_on_the_teacher_grid():
    sched = sch.FewStepSchedule()
    assert (sched.timesteps, sched.shift, sched.ode_steps) == ((1000.0, 750.0, 500.0, 250.0), 5.0, 48)
    assert sched.student_indices() == [0, 12, 24, 36]
    torch.testing.assert_close(sched.student_sigmas(), sched.grid()[[0, 12, 24, 36]], atol=1e-12, rtol=0)
    # independent closed form: σ = 5u / (1 + 4u) at u = 1, 3/4, 1/2, 1/4
    expected = [5 * u / (1 + 4 * u) for u in (1.0, 0.75, 0.5, 0.25)]
    assert sched.student_sigmas().tolist() == pytest.approx(expected, abs=1e-15)
    assert sched.num_steps == 4 and sched.grid().shape == (49,)


@given(k=st.integers(1, 12), n=st.integers(1, 60), shift=st.floats(0.5, 8.0))
def test_uniform_schedule_is_on_the_grid_iff_k_divides_n(k, n, shift):
    sched = sch.FewStepSchedule.uniform(k, shift, n)
    if n % k == 0:
        assert sched.student_indices() == [i * n // k for i in range(k)]
    else:
        with pytest.raises(ValueError, match="not on the"):
            sched.check_on_grid()


def test_grid_index_finds_the_first_match_and_explains_a_miss():
    grid = torch.tensor([1.0, 0.5, 0.5 + 1e-12, 0.0], dtype=torch.float64)
    assert sch.grid_index(grid, 0.5) == 1 and sch.grid_index(grid, torch.tensor(0.0)) == 3
    with pytest.raises(ValueError, match=r"σ=0\.3 is not on the 3-step grid \(nearest 0\.5\); add it"):
        sch.grid_index(grid, 0.3, "add it")


def test_few_step_schedule_rejects_bad_settings():
    with pytest.raises(ValueError, match="ode_steps"):
        sch.FewStepSchedule(ode_steps=0)
    with pytest.raises(ValueError, match="shift"):
        sch.FewStepSchedule(shift=0.0)
    with pytest.raises(ValueError, match="decreasing"):
        sch.FewStepSchedule(timesteps=(500.0, 750.0))
