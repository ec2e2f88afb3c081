import pytest
import torch
from torch import nn

from cf_ref.distill.cd import consistency_distillation_loss, consistency_function, sample_grid_indices
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
