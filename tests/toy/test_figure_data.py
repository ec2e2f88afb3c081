"""toy.figure_data: the figure tensors against the Gaussian closed forms (the teachers' trajectories end at their
flow maps; the conditional-expectation panel's mean is E[x0_i | ε_≤i] = μ_i + Σ_{j≤i} R_ij ε_j)."""

import torch

from cf_ref.masks import AttentionMode
from cf_ref.solvers import Method
from toy import closed_form
from toy.data import ar1_gaussian
from toy.figure_data import conditional_expectation_figure, teacher_trajectories
from toy.networks import FrameNetConfig
from toy.pairs import GridConfig
from toy.students import TrainedStudent, build_network

GRID = GridConfig(teacher_steps=16, shift=2.0, method=Method.RK4, student_steps=(1,))


def test_trajectories_start_at_the_noise_and_end_at_the_flow_maps():
    data = ar1_gaussian(3, 1)
    noise = torch.randn(8, 3, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    traj = teacher_trajectories(data, noise, GRID)
    assert traj["bidirectional"].shape == traj["ar"].shape == (8, 17, 3, 1)
    torch.testing.assert_close(traj["bidirectional"][:, 0], noise)
    torch.testing.assert_close(traj["bidirectional"][:, -1], closed_form.joint_flow_map(data, noise), atol=1e-4, rtol=0)
    # the AR teacher rolls out on its own outputs: its end point is the AR flow map given its own earlier frames
    end = traj["ar"][:, -1]
    torch.testing.assert_close(end, closed_form.ar_flow_map(data, noise, end), atol=1e-4, rtol=0)


def test_conditional_expectation_panel_matches_the_closed_form():
    data = ar1_gaussian(3, 1)
    student = TrainedStudent(
        build_network(FrameNetConfig(3, 1, AttentionMode.BLOCK_CAUSAL, hidden=8, depth=1), 0), torch.ones(1), []
    )
    fig = conditional_expectation_figure(data, student, GRID, 4000, torch.Generator().manual_seed(1))
    noise = fig["noise"][None]
    assert fig["teacher_outputs"].shape == (3, 4000, 1) and fig["student"].shape == (3, 1)
    expected = closed_form.causal_conditional_expectation(data, noise)[0]
    lost_std = closed_form.lost_variance(data).sqrt()
    for i in range(3):  # Monte Carlo mean of 4000 redraws: within 4 standard errors of the closed form
        assert abs(float(fig["mean"][i, 0] - expected[i, 0])) <= 4 * float(lost_std[i]) / 4000**0.5 + 1e-4
    torch.testing.assert_close(fig["flow_map"], closed_form.joint_flow_map(data, noise)[0], atol=1e-4, rtol=0)
