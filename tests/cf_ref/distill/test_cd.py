import pytest
import torch
from torch import nn

from cf_ref.distill.cd import CDTimes, consistency_distillation_loss, consistency_function, sample_grid_indices
from cf_ref.ema import ema_copy
from cf_ref.schedule import sigma_grid, velocity_from_x0
from cf_ref.solvers import Method
from tests.cf_ref.gaussian_oracle import flow_map_from
from toy.data import ar1_gaussian
from toy.teachers import BidirectionalTeacher

DATA = ar1_gaussian(num_frames=2, dim=1, rho=0.7)


class ExactConsistency(nn.Module):
    """f(x, σ) = the Gaussian flow map from σ, plus a learnable offset (0 = exact)."""

    def __init__(self, offset: float = 0.0):
        super().__init__()
        self.offset = nn.Parameter(torch.tensor(offset, dtype=torch.float64))

    def forward(self, x, sigma):
        x0 = flow_map_from(DATA, x, sigma[:, 0]) + self.offset * (sigma[..., None] > 0)
        return velocity_from_x0(x, x0, sigma.clamp_min(1e-12))  # at σ = 0, x0 = x and the velocity is 0


def _batch(seed=0, n=64):
    g = torch.Generator().manual_seed(seed)
    x0, _ = DATA.sample(n, g)
    eps = torch.randn(n, 2, 1, generator=g, dtype=torch.float64)
    return x0, eps, g


def test_consistency_function_boundary_condition():
    x = torch.randn(4, 2, 1, dtype=torch.float64)
    f = consistency_function(lambda x, s: torch.full_like(x, 7.0), x, torch.zeros(4, 2, dtype=torch.float64))
    torch.testing.assert_close(f, x)


@pytest.mark.parametrize("method,tol", [(Method.EULER, 2e-3), (Method.HEUN, 2e-6)])
def test_exact_flow_map_is_self_consistent(method, tol):
    x0, eps, g = _batch()
    teacher = BidirectionalTeacher(DATA).velocity
    grid = sigma_grid(48, shift=3.0)
    index = sample_grid_indices(64, 2, 48, generator=g)  # one σ per sample (joint teacher)
    student = ExactConsistency()
    loss = consistency_distillation_loss(student, ema_copy(student), teacher, x0, eps, grid, index, method)
    assert float(loss.detach()) < tol  # only the teacher's one-step discretisation error remains


def test_wrong_student_has_large_loss_and_only_the_student_gets_gradient():
    x0, eps, g = _batch(1)
    teacher = BidirectionalTeacher(DATA).velocity
    grid = sigma_grid(48, shift=3.0)
    index = sample_grid_indices(64, 2, 48, generator=g)
    student = ExactConsistency(offset=0.5)
    target = ema_copy(ExactConsistency(offset=0.0))
    loss = consistency_distillation_loss(student, target, teacher, x0, eps, grid, index, Method.HEUN)
    assert float(loss.detach()) > 0.1
    loss.backward()
    assert student.offset.grad is not None and float(student.offset.grad) > 0
    assert target.offset.grad is None


def test_cd_index_validation():
    x0, eps, _ = _batch()
    with pytest.raises(ValueError, match="grid indices"):
        consistency_distillation_loss(
            ExactConsistency(), ExactConsistency(), lambda x, s: x, x0, eps, sigma_grid(4), torch.full((64, 2), 4)
        )
    with pytest.raises(ValueError, match="strictly decreasing"):
        consistency_distillation_loss(
            ExactConsistency(), ExactConsistency(), lambda x, s: x, x0, eps, sigma_grid(4).flip(0), torch.zeros(64, 2)
        )


def _authors_cd_times(n: int, shift: float = 5.0, steps: int = 48):
    """NaiveConsistency.generator_loss's time arithmetic for grid index n, transcribed: its 48-step scheduler
    (``FlowMatchScheduler(shift=5, sigma_min=0, extra_one_step=True).set_timesteps(48)``, float32), bf16 timesteps
    t and t_next, ``dt = (t - t_next) / 1000`` in bf16, and the wrapper's x0 σ: ``sigmas[argmin |timesteps - t|]``
    over its 1000-step scheduler (float32), found in float64 as ``_convert_flow_pred_to_x0`` does."""

    def scheduler(k):
        s = torch.linspace(1.0, 0.0, k + 1, dtype=torch.float32)[:-1]
        s = shift * s / (1 + (shift - 1) * s)
        return s, s * 1000

    _, timesteps = scheduler(steps)
    sigmas_1000, timesteps_1000 = scheduler(1000)
    t = timesteps[n] * torch.ones(1, dtype=torch.bfloat16)
    t_next = timesteps[n + 1] * torch.ones(1, dtype=torch.bfloat16)
    dt = t - t_next
    dt /= 1000

    def x0_sigma(tt):
        return float(sigmas_1000.double()[(timesteps_1000.double() - tt.double()).abs().argmin()])

    return float(t), float(t_next), float(dt), x0_sigma(t), x0_sigma(t_next)


@pytest.mark.parametrize("n", [0, 1, 4, 6, 23, 46])
def test_rounded_times_are_the_authors_cd_arithmetic(n):
    times = CDTimes.rounded(sigma_grid(48, 5.0), 5.0)
    t, t_next, dt, x0_n, x0_next = _authors_cd_times(n)
    assert 1000 * float(times.told[n]) == pytest.approx(t, abs=1e-9)
    assert 1000 * float(times.told[n + 1]) == pytest.approx(t_next, abs=1e-9)
    assert float(times.teacher_step[n]) == dt  # bf16 values, exactly
    assert float(times.x0_sigma[n]) == pytest.approx(x0_n, abs=1e-6)  # float32 vs float64 grid
    assert float(times.x0_sigma[n + 1]) == pytest.approx(x0_next, abs=1e-6)


def test_rounded_times_closed_form_values_and_the_sigma_zero_boundary():
    """n = 0: t = 1000 and t_1 = 995.76 → 996 in bf16, dt = bf16(0.004) = 131/32768 (7-bit mantissa of 1.024·2^-8)
    instead of σ_0 - σ_1 = 0.00424; n = 4: 982.14 → 984, 977.27 → 976, dt = bf16(0.008) = 131/16384."""
    grid = sigma_grid(48, 5.0)
    times = CDTimes.rounded(grid, 5.0)
    assert float(times.teacher_step[0]) == 131 / 32768 and float(grid[0] - grid[1]) == pytest.approx(0.004237, abs=1e-6)
    assert float(times.teacher_step[4]) == 131 / 16384
    assert float(times.told[-1]) == 0.0 and float(times.x0_sigma[-1]) == 0.0  # f(x, 0) = x is kept
    exact = CDTimes.exact(grid)
    torch.testing.assert_close(exact.teacher_step, grid[:-1] - grid[1:])
    assert torch.equal(exact.told, grid) and torch.equal(exact.x0_sigma, grid)


def test_loss_with_exact_times_equals_the_default_and_rounded_times_follow_the_authors_steps():
    x0, eps, g = _batch(2)
    teacher = BidirectionalTeacher(DATA).velocity
    grid = sigma_grid(48, shift=5.0)
    index = sample_grid_indices(64, 2, 48, generator=g)
    student, target = ExactConsistency(offset=0.2), ExactConsistency(offset=-0.1)
    default = consistency_distillation_loss(student, target, teacher, x0, eps, grid, index)
    exact = consistency_distillation_loss(student, target, teacher, x0, eps, grid, index, times=CDTimes.exact(grid))
    torch.testing.assert_close(exact, default)

    # rounded times: one index for the whole batch, replayed by hand with the authors' arithmetic
    n = 4
    index = torch.full((64, 2), n)
    t, t_next, dt, x0_n, x0_next = _authors_cd_times(n)
    told = []

    def recording(field):
        def f(x, s):
            told.append(float(s.flatten()[0]) * 1000)
            return field(x, s)

        return f

    times = CDTimes.rounded(grid, 5.0)
    loss = consistency_distillation_loss(
        recording(student), recording(target), recording(teacher), x0, eps, grid, index, times=times
    )
    assert told == pytest.approx([t, t_next, t], abs=1e-9)  # teacher, target, student
    s_n = float(grid[n])
    x_n = (1 - s_n) * x0 + s_n * eps
    sig = lambda v: torch.full((64, 2), v / 1000, dtype=torch.float64)  # noqa: E731
    x_next = x_n - dt * teacher(x_n, sig(t))
    f_student = x_n - x0_n * student(x_n, sig(t))
    f_target = x_next - x0_next * target(x_next, sig(t_next))
    torch.testing.assert_close(loss.double(), (f_student - f_target).pow(2).mean().detach(), atol=1e-7, rtol=1e-6)
    # with the exact flow map as student and target, only the teacher step's error remains: at n = 4 the bf16 step
    # (0.0080 for 0.0049) makes it several times the exact Euler step's
    exact_map = ExactConsistency()
    errors = [
        float(consistency_distillation_loss(exact_map, exact_map, teacher, x0, eps, grid, index, times=t).detach())
        for t in (CDTimes.exact(grid), times)
    ]
    assert errors[1] > 3 * errors[0]  # measured: 5.5×
    with pytest.raises(ValueError, match="Euler"):
        consistency_distillation_loss(student, target, teacher, x0, eps, grid, index, Method.HEUN, times=times)
