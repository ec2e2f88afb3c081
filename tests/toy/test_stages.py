"""The toy pipeline stages (toy/stages.py): every loss decreases on a tiny run; DMD with the exact real score
moves a wrong generator toward the data; consistency distillation on a Gaussian with a known flow map."""

import copy

import pytest
import torch

from cf_ref.distill.cd import consistency_distillation_loss, sample_grid_indices
from cf_ref.masks import AttentionMode
from cf_ref.recipes import Forcing, GeneratorInput
from cf_ref.schedule import sigma_grid
from toy import closed_form, metrics
from toy.data import SequenceData, ar1_gaussian, shared_mode_mixture
from toy.networks import FrameNetConfig, MaskedFrameMLP, with_mode
from toy.stages import (
    DMDSettings,
    distill_ode,
    few_step_sample,
    generator_samples,
    ode_pairs,
    sample_data,
    train_ar_teacher,
    train_base_model,
    train_cd_student,
    train_dmd,
)
from toy.teachers import ARTeacher, BidirectionalTeacher
from toy.training import OptimConfig

SIGMAS = torch.tensor([1.0, 0.75, 0.5, 0.25])


def _net(data: SequenceData, mode: AttentionMode, hidden: int = 32, seed: int = 0) -> MaskedFrameMLP:
    torch.manual_seed(seed)
    return MaskedFrameMLP(FrameNetConfig(data.num_frames, data.dim, mode, hidden=hidden, depth=2))


def _decreased(history: list[float], factor: float = 0.8) -> bool:
    k = max(len(history) // 5, 1)
    return sum(history[-k:]) / k < factor * sum(history[:k]) / k


@pytest.fixture(scope="module")
def mixture() -> SequenceData:
    return shared_mode_mixture(num_frames=3, dim=1, num_modes=2)


def test_base_model_loss_decreases(mixture):
    net = _net(mixture, AttentionMode.BIDIRECTIONAL)
    history = train_base_model(net, mixture, OptimConfig(steps=80), 128, 1.0, torch.Generator().manual_seed(0))
    assert _decreased(history)


@pytest.mark.parametrize("forcing", list(Forcing))
def test_ar_teacher_loss_decreases(mixture, forcing):
    net = _net(mixture, AttentionMode.BLOCK_CAUSAL)
    history = train_ar_teacher(net, mixture, forcing, OptimConfig(steps=80), 128, 1.0, torch.Generator().manual_seed(0))
    assert _decreased(history)


@pytest.mark.parametrize("causal", [False, True])
def test_ode_student_loss_decreases(mixture, causal):
    g = torch.Generator().manual_seed(0)
    teacher = _net(mixture, AttentionMode.BLOCK_CAUSAL if causal else AttentionMode.BIDIRECTIONAL, seed=1)
    context = sample_data(mixture, 512, g) if causal else None
    eps = torch.randn(512, 3, 1, generator=g)
    pairs = ode_pairs(teacher, eps, sigma_grid(8), SIGMAS, context=context)
    assert pairs.states.shape == (512, 4, 3, 1) and pairs.target.shape == (512, 3, 1)
    torch.testing.assert_close(pairs.states[:, 0], eps)  # the state at σ = 1 is the noise
    student = _net(mixture, AttentionMode.BLOCK_CAUSAL, seed=2)
    history = distill_ode(student, pairs, OptimConfig(steps=80), 128, g)
    assert _decreased(history)


def test_cd_loss_decreases_and_target_trails_student(mixture):
    teacher = _net(mixture, AttentionMode.BLOCK_CAUSAL, seed=1)
    student = _net(mixture, AttentionMode.BLOCK_CAUSAL, seed=2)
    before = copy.deepcopy(student)
    history = train_cd_student(
        student, teacher, mixture, sigma_grid(8), OptimConfig(steps=80), 128, 0.9, torch.Generator().manual_seed(0)
    )
    assert _decreased(history)
    assert not torch.equal(before.layers[0].weight, student.layers[0].weight)


def test_generator_samples_gradient_and_inputs(mixture):
    net = _net(mixture, AttentionMode.BLOCK_CAUSAL)
    for mode in GeneratorInput:
        x = generator_samples(net, 16, mixture, SIGMAS, mode, torch.Generator().manual_seed(0))
        assert x.shape == (16, 3, 1) and x.requires_grad
        x.sum().backward()
        assert net.layers[0].weight.grad is not None and float(net.layers[0].weight.grad.abs().sum()) > 0
        net.zero_grad()
    with torch.no_grad():
        assert not generator_samples(
            net, 4, mixture, SIGMAS, GeneratorInput.SELF_ROLLOUT, torch.Generator()
        ).requires_grad


def test_dmd_with_exact_real_score_moves_wrong_generator_to_data():
    """A generator that puts every frame near the origin (a wrong, collapsed distribution) is trained by DMD with
    the exact bidirectional teacher as real score and a critic learning its samples: energy distance drops."""
    data = ar1_gaussian(num_frames=2, dim=1, rho=0.8, drift=1.5)
    g = torch.Generator().manual_seed(0)
    generator = _net(data, AttentionMode.BLOCK_CAUSAL, seed=3)
    with torch.no_grad():  # deliberately wrong: x0 ≈ 0.2·(noise) for every frame
        for layer in generator.layers:
            layer.weight.mul_(0.05)
            layer.bias.zero_()
    critic = _net(data, AttentionMode.BIDIRECTIONAL, seed=4)
    train_base_model(critic, data, OptimConfig(steps=60), 256, 1.0, g)  # a fair starting critic (as the base model)
    exact = BidirectionalTeacher(data)

    def real(x, sigma):
        return exact.velocity(x.double(), sigma.double()).float()

    reference = sample_data(data, 1024, torch.Generator().manual_seed(1))
    noise = torch.randn(1024, 2, 1, generator=torch.Generator().manual_seed(2))
    before = metrics.energy_distance(few_step_sample(generator, noise, SIGMAS), reference)
    settings = DMDSettings(OptimConfig(steps=50, lr=5e-3), OptimConfig(steps=250, lr=5e-3), 64, SIGMAS, shift=1.0)
    result = train_dmd(generator, critic, real, data, settings, g)
    after = metrics.energy_distance(few_step_sample(result.final, noise, SIGMAS), reference)
    assert len(result.critic_losses) == 5 * len(result.generator_losses) == 250
    assert after < 0.25 * before, (before, after)


def _gaussian_ar_flow(data: SequenceData, context: torch.Tensor):
    """Exact consistency function of the AR teacher of a single Gaussian (frame-wise, clean context):
    f*(x, σ) = m + S^{1/2} C_σ^{-1/2} (x − (1−σ) m), C_σ = (1−σ)² S + σ² I, with (m, S) the conditional
    law of frame i given the context (S and C_σ share eigenvectors, so the PF-ODE map is this linear map).
    Returns f*(x [B, F, 1], σ [B, F]) -> [B, F, 1]."""
    teacher = ARTeacher(data)
    moments = []
    for j in range(data.num_frames):
        mix = teacher.block_mixture(j, context.double())
        moments.append((mix.means[:, 0, 0], mix.covs[0, 0, 0]))  # d = 1: conditional mean [B], variance

    def f_star(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        out = []
        for j, (m, s) in enumerate(moments):
            sg = sigma[:, j].double()
            c = (1 - sg) ** 2 * s + sg**2
            out.append(m + s.sqrt() / c.sqrt() * (x[:, j, 0].double() - (1 - sg) * m))
        return torch.stack(out, dim=1)[..., None].to(x.dtype)

    return f_star


def test_cd_self_consistency_on_gaussian_flow_map():
    """With the exact flow map as consistency function (student = EMA target) and the exact AR teacher, the CD
    loss is ~0 (only the Euler step's local error); a wrong student gives a far larger loss. The closed form
    itself is checked at σ = 1 against the AR teacher's integrated flow map and toy.closed_form.ar_flow_map, and is
    the identity at σ = 0."""
    data = ar1_gaussian(num_frames=3, dim=1, rho=0.9)
    g = torch.Generator().manual_seed(0)
    context = sample_data(data, 256, g).double()
    f_star = _gaussian_ar_flow(data, context)
    eps = torch.randn(256, 3, 1, generator=g, dtype=torch.float64)
    ones, zeros = torch.ones(256, 3, dtype=torch.float64), torch.zeros(256, 3, dtype=torch.float64)
    exact_end = ARTeacher(data).flow_map(eps, context).end  # the AR teacher's PF-ODE, integrated (RK4)
    torch.testing.assert_close(f_star(eps, ones), exact_end, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(f_star(eps, ones), closed_form.ar_flow_map(data, eps, context))  # m + S^{1/2} ε
    torch.testing.assert_close(f_star(eps, zeros), eps)

    def as_velocity(f):  # f(x, σ) = x − σ v(x, σ)  ⇒  v = (x − f) / σ
        return lambda x, sigma: (x - f(x, sigma)) / sigma.clamp_min(1e-12)[..., None]

    teacher = ARTeacher(data)

    def teacher_velocity(x, sigma):
        out = []
        for j in range(3):
            mix = teacher.block_mixture(j, context)
            out.append(teacher.block_velocity(mix, x[:, None, j : j + 1], sigma[:, None, j : j + 1])[:, 0])
        return torch.cat(out, dim=1)

    grid = sigma_grid(200, dtype=torch.float64)
    index = sample_grid_indices(256, 3, len(grid) - 1, generator=g)
    x0 = sample_data(data, 256, g).double()
    exact_field = as_velocity(f_star)
    loss_exact = consistency_distillation_loss(exact_field, exact_field, teacher_velocity, x0, eps, grid, index)

    def identity_field(x, sigma):  # f(x, σ) = x: satisfies the boundary condition but not self-consistency
        return torch.zeros_like(x)

    loss_wrong = consistency_distillation_loss(identity_field, identity_field, teacher_velocity, x0, eps, grid, index)
    assert float(loss_exact) < 1e-3 * float(loss_wrong), (float(loss_exact), float(loss_wrong))


def test_cd_student_learns_gaussian_flow_map():
    """Consistency distillation with the exact AR teacher and an EMA target drives the one-step output
    f_θ(ε, 1 | context) toward the closed-form flow map (error at least halved)."""
    data = ar1_gaussian(num_frames=2, dim=1, rho=0.9)

    class ExactTeacher:
        def velocity_field(self, context):
            teacher = ARTeacher(data)

            def field(x, sigma):
                out = []
                for j in range(2):
                    mix = teacher.block_mixture(j, context.double())
                    xj, sj = x[:, None, j : j + 1].double(), sigma[:, None, j : j + 1].double()
                    out.append(teacher.block_velocity(mix, xj, sj)[:, 0])
                return torch.cat(out, dim=1).to(x.dtype)

            return field

    g = torch.Generator().manual_seed(0)
    student = _net(data, AttentionMode.BLOCK_CAUSAL, hidden=32, seed=5)
    context = sample_data(data, 512, torch.Generator().manual_seed(1))
    eps = torch.randn(512, 2, 1, generator=torch.Generator().manual_seed(2))
    target = _gaussian_ar_flow(data, context)(eps.double(), torch.ones(512, 2)).float()

    def one_step_error() -> float:
        with torch.no_grad():
            v = student.predict(eps, torch.ones(512, 2), context=context)
            return float((eps - v - target).pow(2).mean().sqrt())  # f = x − σ v at σ = 1

    before = one_step_error()
    train_cd_student(student, ExactTeacher(), data, sigma_grid(12), OptimConfig(steps=300), 256, 0.9, g)
    after = one_step_error()
    assert after < 0.5 * before, (before, after)


def test_with_mode_students_start_from_teacher(mixture):
    """Every student starts from its teacher's weights (as the published code loads the AR teacher checkpoint)."""
    teacher = _net(mixture, AttentionMode.BIDIRECTIONAL)
    student = with_mode(teacher, AttentionMode.BLOCK_CAUSAL)
    x, s = torch.randn(4, 3, 1), torch.rand(4, 3)
    torch.testing.assert_close(student(x, s)[:, -1], teacher(x, s)[:, -1])  # the last frame sees every frame
