import pytest
import torch

from cf_ref.distill.ode import gather_states, ode_regression_loss
from cf_ref.granularity import Granularity, sample_indices
from cf_ref.schedule import few_step_sigmas, sigma_grid, velocity_from_x0
from cf_ref.solvers import Method
from tests.cf_ref.gaussian_oracle import flow_map_from, state_at
from toy.data import ar1_gaussian
from toy.teachers import BidirectionalTeacher


def test_gather_states_brute_force():
    states = torch.randn(3, 4, 5, 2)
    sigmas = torch.tensor([1.0, 0.8, 0.5, 0.2])
    index = sample_indices(3, 5, 4, Granularity.FRAME, generator=torch.Generator().manual_seed(0))
    x, s = gather_states(states, sigmas, index)
    for b in range(3):
        for f in range(5):
            torch.testing.assert_close(x[b, f], states[b, index[b, f], f])
            assert float(s[b, f]) == float(sigmas[index[b, f]])


def test_ode_regression_loss_vanishes_for_the_flow_map_and_not_otherwise():
    data = ar1_gaussian(num_frames=3, dim=2, rho=0.8)
    eps = torch.randn(16, 3, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    sig = few_step_sigmas((1000, 750, 500, 250), shift=3.0)
    traj = BidirectionalTeacher(data).flow_map(eps, sigma_grid(48, 3.0), Method.RK4, keep_at=sig)
    # the stored states are the closed-form PF-ODE states
    for k, s in enumerate(sig.tolist()):
        torch.testing.assert_close(traj.states[:, k], state_at(data, eps, s), atol=1e-6, rtol=0)

    def exact_student(x, sigma):  # sees every frame; σ is constant per sample here
        return velocity_from_x0(x, flow_map_from(data, x, sigma[:, 0]), sigma)

    index = sample_indices(16, 3, 4, Granularity.SAMPLE, generator=torch.Generator().manual_seed(3))
    assert float(ode_regression_loss(exact_student, traj.states, sig, traj.end, index)) < 1e-10

    def biased_student(x, sigma):
        return velocity_from_x0(x, flow_map_from(data, x, sigma[:, 0]) + 0.1, sigma)

    loss = float(ode_regression_loss(biased_student, traj.states, sig, traj.end, index))
    assert loss == pytest.approx(0.01, rel=1e-3)


def test_ode_regression_shape_errors():
    with pytest.raises(ValueError, match="index"):
        gather_states(torch.zeros(2, 3, 4, 1), torch.zeros(3), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="target"):
        ode_regression_loss(
            lambda x, s: x,
            torch.zeros(2, 3, 4, 1),
            torch.ones(3),
            torch.zeros(2, 5, 1),
            torch.zeros(2, 4, dtype=torch.long),
        )
