"""toy.pairs: both routes' ODE pairs against the Gaussian closed forms."""

import pytest
import torch

from cf_ref.recipes import PairTeacher
from cf_ref.solvers import Method
from toy import closed_form
from toy.data import ar1_gaussian
from toy.pairs import GridConfig, PairSet, causal_pairs, make_pairs


def test_grid_config_keeps_every_student_list():
    grid = GridConfig(teacher_steps=16, shift=2.0, student_steps=(4, 1))
    kept = grid.kept_sigmas()
    assert torch.allclose(kept, grid.student_sigmas(4))  # the 1-step list (σ = 1) is its first entry
    assert kept[0] == 1.0
    assert torch.allclose(grid.student_sigmas(4), grid.grid()[::4][:-1])
    with pytest.raises(ValueError, match="multiple of"):
        GridConfig(teacher_steps=18, student_steps=(4, 1))


def test_bidirectional_pairs_follow_the_joint_flow():
    # Gaussian data: x0 = μ + Σ^{1/2} ε and x_σ = (1-σ)μ + C_σ^{1/2} ε along the PF-ODE (C_σ = (1-σ)²Σ + σ²I).
    data = ar1_gaussian(3, 2)
    grid = GridConfig(teacher_steps=24, shift=2.0, method=Method.RK4, student_steps=(3,))
    pairs = make_pairs(data, PairTeacher.BIDIRECTIONAL, 64, grid, torch.Generator().manual_seed(0))
    assert pairs.states.shape == (64, 3, 3, 2) and pairs.context is None
    assert torch.equal(pairs.states[:, 0], pairs.noise)
    assert torch.allclose(pairs.target, closed_form.joint_flow_map(data, pairs.noise), atol=1e-4)
    mean = data.mean()
    for k, s in enumerate(pairs.sigmas.tolist()):
        root = closed_form.symmetric_sqrt(closed_form.marginal_covariance(data, s))
        expected = (1 - s) * mean + data.unflatten(data.flatten(pairs.noise) @ root.T)
        assert torch.allclose(pairs.states[:, k], expected, atol=1e-4)


def test_causal_pairs_follow_the_ar_flow_with_clean_context():
    data = ar1_gaussian(4, 1)
    grid = GridConfig(teacher_steps=16, shift=2.0)
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(32, 4, 1, generator=gen, dtype=torch.float64)
    context, _ = data.sample(32, gen)
    pairs = causal_pairs(data, noise, context, grid)
    assert torch.allclose(pairs.target, closed_form.ar_flow_map(data, noise, context), atol=1e-5)
    assert torch.equal(pairs.context, context)


def test_select_and_head():
    data = ar1_gaussian(2, 1)
    grid = GridConfig(teacher_steps=8, shift=1.0, student_steps=(4, 2, 1))
    pairs = make_pairs(data, PairTeacher.AR, 10, grid, torch.Generator().manual_seed(2))
    two = pairs.select(grid.student_sigmas(2))
    assert two.states.shape[1] == 2
    assert torch.equal(two.states[:, 1], pairs.states[:, 2])  # σ = 0.5 is the third of 1, .75, .5, .25
    assert len(pairs.head(3)) == 3 and pairs.head(3).context.shape == (3, 2, 1)
    with pytest.raises(ValueError, match="the kept states are at"):
        pairs.select([0.3])


def test_pairset_validates_shapes_and_route():
    s = torch.zeros(2, 1, 3, 1)
    with pytest.raises(ValueError, match="context"):
        PairSet(PairTeacher.AR, s, torch.ones(1), torch.zeros(2, 3, 1), torch.zeros(2, 3, 1))
    with pytest.raises(ValueError, match="sigmas"):
        PairSet(PairTeacher.BIDIRECTIONAL, s, torch.ones(2), torch.zeros(2, 3, 1), torch.zeros(2, 3, 1))
