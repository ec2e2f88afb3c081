"""toy.students: ODE-regression training, input checks, and the two sampling regimes against explicit loops."""

import pytest
import torch

from cf_ref.masks import AttentionMode
from cf_ref.recipes import PairTeacher
from cf_ref.schedule import Prediction
from toy import closed_form
from toy.data import ar1_gaussian
from toy.networks import FrameNetConfig
from toy.pairs import GridConfig, make_pairs
from toy.students import (
    STUDENT_MODE,
    ContextRegime,
    StudentConfig,
    TrainedStudent,
    build_network,
    predict_x0,
    sample,
    train_ode_student,
)
from toy.training import OptimConfig

GRID = GridConfig(teacher_steps=8, shift=2.0, student_steps=(2, 1))
SMALL = StudentConfig(hidden=32, depth=2, batch_size=256, optim=OptimConfig(steps=250, lr=2e-2, final_lr_fraction=0.01))


def _train(teacher: PairTeacher, num_steps: int, data, seed: int = 0) -> tuple[TrainedStudent, object]:
    pairs = make_pairs(data, teacher, 4096, GRID, torch.Generator().manual_seed(seed)).select(
        GRID.student_sigmas(num_steps)
    )
    net_config = SMALL.network(data.num_frames, data.dim, STUDENT_MODE[teacher])
    student = train_ode_student(
        net_config, pairs.states, pairs.sigmas, pairs.target, pairs.context, SMALL.optim, SMALL.batch_size, seed=seed
    )
    return student, pairs


def test_causal_student_learns_the_ar_flow_map():
    data = ar1_gaussian(3, 1)
    student, _ = _train(PairTeacher.AR, 1, data)
    assert sum(student.history[-20:]) < 0.05 * sum(student.history[:20])
    gen = torch.Generator().manual_seed(9)
    eps = torch.randn(512, 3, 1, generator=gen, dtype=torch.float64)
    context, _ = data.sample(512, gen)
    pred = predict_x0(student.net, eps, 1.0, context).double()
    assert (pred - closed_form.ar_flow_map(data, eps, context)).pow(2).mean().sqrt() < 0.05


def test_bidirectional_student_learns_the_conditional_expectation_not_the_flow_map():
    data = ar1_gaussian(3, 1)
    student, _ = _train(PairTeacher.BIDIRECTIONAL, 1, data)
    eps = torch.randn(512, 3, 1, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    pred = predict_x0(student.net, eps, 1.0).double()
    to_ce = (pred - closed_form.causal_conditional_expectation(data, eps)).pow(2).mean(dim=(0, 2)).sqrt()
    to_map = (pred - closed_form.joint_flow_map(data, eps)).pow(2).mean(dim=(0, 2)).sqrt()
    assert bool((to_ce[:2] < to_map[:2] / 3).all())  # frames 0, 1 cannot see later noise
    assert to_map[0] > 0.3


def test_same_seed_same_student():
    data = ar1_gaussian(2, 1)
    a, _ = _train(PairTeacher.AR, 2, data, seed=3)
    b, _ = _train(PairTeacher.AR, 2, data, seed=3)
    assert a.history == b.history
    assert all(torch.equal(p, q) for p, q in zip(a.net.parameters(), b.net.parameters()))


def _net(mode: AttentionMode, frames: int = 3, dim: int = 2):
    return build_network(FrameNetConfig(frames, dim, mode, hidden=16, depth=2, prediction=Prediction.X0), seed=0)


def test_clean_rollout_of_a_teacher_forcing_student_is_an_explicit_ar_loop():
    net = _net(AttentionMode.TEACHER_FORCING)
    student = TrainedStudent(net, torch.tensor([1.0]), [])
    noise = torch.randn(5, 3, 2)
    out = sample(student, noise, ContextRegime.CLEAN)
    context = torch.zeros(5, 3, 2)
    for i in range(3):  # frame i reads its noise and the outputs of frames < i as clean context
        frame_i = predict_x0(net, noise, 1.0, context)[:, i]
        context[:, i] = frame_i
    assert torch.allclose(out, context, atol=1e-6)


def test_same_level_rollout_is_causal_and_one_step_is_the_network():
    net = _net(AttentionMode.BLOCK_CAUSAL)
    one = TrainedStudent(net, torch.tensor([1.0]), [])
    noise = torch.randn(4, 3, 2)
    out = sample(one, noise, ContextRegime.SAME_LEVEL)
    assert torch.allclose(out, predict_x0(net, noise, 1.0), atol=1e-6)
    two = TrainedStudent(net, torch.tensor([1.0, 0.5]), [])
    changed = noise.clone()
    changed[:, 2] += 1.0
    a = sample(two, noise, ContextRegime.SAME_LEVEL, torch.Generator().manual_seed(0))
    b = sample(two, changed, ContextRegime.SAME_LEVEL, torch.Generator().manual_seed(0))
    assert torch.equal(a[:, :2], b[:, :2]) and not torch.equal(a[:, 2], b[:, 2])


def test_input_checks():
    tf = FrameNetConfig(3, 1, AttentionMode.TEACHER_FORCING, hidden=8, depth=1)
    bc = FrameNetConfig(3, 1, AttentionMode.BLOCK_CAUSAL, hidden=8, depth=1)
    states, sig, tgt = torch.zeros(4, 2, 3, 1), torch.tensor([1.0, 0.5]), torch.zeros(4, 3, 1)
    with pytest.raises(ValueError, match="clean context"):
        train_ode_student(tf, states, sig, tgt, None)
    with pytest.raises(ValueError, match="reads no clean context"):
        train_ode_student(bc, states, sig, tgt, torch.zeros(4, 3, 1))
    with pytest.raises(ValueError, match="states must be"):
        train_ode_student(bc, torch.zeros(4, 2, 2, 1), sig, tgt)
    with pytest.raises(ValueError, match="block-causal"):
        sample(TrainedStudent(build_network(tf, 0), sig, []), torch.zeros(2, 3, 1), ContextRegime.SAME_LEVEL)


def test_ema_student_is_the_moving_average_of_the_trained_weights(monkeypatch):
    """Against an EMA computed by hand from snapshots of the same (deterministic) training run."""
    import toy.students

    data = ar1_gaussian(2, 1)
    pairs = make_pairs(data, PairTeacher.AR, 512, GRID, torch.Generator().manual_seed(1)).select(GRID.student_sigmas(1))
    net_config = FrameNetConfig(2, 1, AttentionMode.TEACHER_FORCING, hidden=8, depth=1, prediction=Prediction.X0)
    trained, snapshots = [], []
    train = toy.students.train

    def spy(module, loss_fn, config, on_step=None):  # the network is built inside train_ode_student
        trained.append(module)
        return train(module, loss_fn, config, on_step)

    monkeypatch.setattr("toy.students.train", spy)
    args = (net_config, pairs.states, pairs.sigmas, pairs.target, pairs.context, OptimConfig(steps=12, lr=1e-2), 64)
    plain = train_ode_student(*args, seed=2, on_step=lambda t, loss: snapshots.append(
        [p.detach().clone() for p in trained[0].parameters()]))  # fmt: skip
    averaged = train_ode_student(*args, seed=2, ema_decay=0.8)
    expected = snapshots[0]
    for weights in snapshots[1:]:
        expected = [0.8 * e + 0.2 * w for e, w in zip(expected, weights)]
    for got, want in zip(averaged.net.parameters(), expected):
        torch.testing.assert_close(got, want)
    assert not all(torch.equal(p, q) for p, q in zip(plain.net.parameters(), averaged.net.parameters()))
    with pytest.raises(ValueError, match="ema_decay"):
        StudentConfig(ema_decay=1.0)
