import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cf_ref.schedule import sigma_grid
from cf_ref.solvers import Method
from toy import closed_form, gmm
from toy.data import SequenceData, ar1_gaussian, shared_mode_mixture
from toy.metrics import energy_distance
from toy.teachers import ARTeacher, BidirectionalTeacher


def random_gaussian_sequence(seed: int, frames: int, dim: int) -> SequenceData:
    g = torch.Generator().manual_seed(seed)
    n = frames * dim
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    cov = a @ a.T / n + 0.3 * torch.eye(n, dtype=torch.float64)
    mean = torch.randn(n, generator=g, dtype=torch.float64)
    return SequenceData("random", frames, dim, gmm.Mixture(torch.zeros(1, dtype=torch.float64), mean[None], cov[None]))


@given(seed=st.integers(0, 200), frames=st.integers(1, 4), dim=st.integers(1, 2))
def test_gaussian_joint_flow_map_is_mean_plus_symmetric_root(seed, frames, dim):
    data = random_gaussian_sequence(seed, frames, dim)
    eps = torch.randn(8, frames, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    end = BidirectionalTeacher(data).flow_map(eps, sigma_grid(24), Method.RK4).end
    torch.testing.assert_close(end, closed_form.joint_flow_map(data, eps), atol=2e-6, rtol=0)


@given(seed=st.integers(0, 200), frames=st.integers(2, 4), block=st.sampled_from([1, 2]))
def test_gaussian_ar_flow_map_is_conditional_mean_plus_schur_root(seed, frames, block):
    frames = frames if frames % block == 0 else frames + 1
    data = random_gaussian_sequence(seed, frames, 1)
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(8, frames, 1, generator=g, dtype=torch.float64)
    context, _ = data.sample(8, g)
    end = ARTeacher(data, block).flow_map(eps, context, sigma_grid(24), Method.RK4).end
    torch.testing.assert_close(end, closed_form.ar_flow_map(data, eps, context, block), atol=2e-6, rtol=0)


@pytest.mark.parametrize("make", [lambda: ar1_gaussian(3, 2), lambda: shared_mode_mixture(3, 2, 4)])
def test_ar_flow_map_is_invertible_for_fixed_context(make):
    data = make()
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(16, 3, 2, generator=g, dtype=torch.float64)
    context, _ = data.sample(16, g)
    teacher = ARTeacher(data)
    grid = sigma_grid(32)
    x0 = teacher.flow_map(eps, context, grid, Method.RK4).end
    back = teacher.flow_map(x0, context, grid.flip(0), Method.RK4).end  # integrate σ: 0 -> 1
    torch.testing.assert_close(back, eps, atol=1e-4, rtol=0)


def test_ar_sampling_reproduces_joint_moments():
    for data in (ar1_gaussian(4, 1, rho=0.9), shared_mode_mixture(3, 1, 2)):
        g = torch.Generator().manual_seed(1)
        eps = torch.randn(20000, data.num_frames, 1, generator=g, dtype=torch.float64)
        x = ARTeacher(data).sample(eps, sigma_grid(16), Method.RK4).x0
        flat = data.flatten(x)
        torch.testing.assert_close(flat.mean(0), data.flatten(data.mean()), atol=0.04, rtol=0)
        torch.testing.assert_close(torch.cov(flat.T), data.covariance(), atol=0.06, rtol=0.03)


def test_ar_sampling_is_the_ar_flow_map_on_its_own_outputs():
    data = shared_mode_mixture(4, 2, 3)
    eps = torch.randn(32, 4, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    teacher = ARTeacher(data, block_size=2)
    x = teacher.sample(eps).x0
    torch.testing.assert_close(teacher.flow_map(eps, x).end, x, atol=1e-10, rtol=0)


def test_exact_few_step_sampler_is_the_teacher_at_one_step_and_keeps_the_joint_law_at_four():
    """K = 1 (σ = 1) is the AR sampler; K = 4 re-noises between exact flow-map jumps, and each jump draws the block
    given its context, so the samples keep the data's joint moments (the Gaussian's closed-form covariance)."""
    grid = sigma_grid(16)
    data = ar1_gaussian(4, 1, rho=0.9)
    teacher = ARTeacher(data)
    g = torch.Generator().manual_seed(4)
    eps = torch.randn(20000, 4, 1, generator=g, dtype=torch.float64)
    one = teacher.few_step_sample(eps.float(), grid[:1].float(), grid, Method.RK4)
    torch.testing.assert_close(one.double(), teacher.sample(eps, grid, Method.RK4).x0, atol=1e-5, rtol=0)
    four = teacher.few_step_sample(eps.float(), grid[[0, 4, 8, 12]].float(), grid, Method.RK4, generator=g)
    flat = data.flatten(four.double())
    torch.testing.assert_close(flat.mean(0), data.flatten(data.mean()), atol=0.04, rtol=0)
    torch.testing.assert_close(torch.cov(flat.T), data.covariance(), atol=0.06, rtol=0.03)
    with pytest.raises(ValueError, match="points of the grid"):
        teacher.few_step_sample(eps[:2].float(), torch.tensor([1.0, 0.33]), grid, Method.RK4)


def test_bidirectional_teacher_samples_the_mixture():
    data = shared_mode_mixture(3, 2, 4)
    g = torch.Generator().manual_seed(3)
    eps = torch.randn(1500, 3, 2, generator=g, dtype=torch.float64)
    x = BidirectionalTeacher(data).flow_map(eps, sigma_grid(32)).end
    ref, _ = data.sample(1500, g)
    ref2, _ = data.sample(1500, g)
    assert energy_distance(x, ref) < 3 * abs(energy_distance(ref2, ref)) + 0.01


def test_teacher_per_frame_levels_and_validation():
    data = ar1_gaussian(3, 1)
    teacher = BidirectionalTeacher(data)
    x = torch.randn(5, 3, 1, dtype=torch.float64)
    torch.testing.assert_close(
        teacher.velocity(x, torch.full((5, 3), 0.4, dtype=torch.float64)), teacher.velocity(x, 0.4)
    )
    with pytest.raises(ValueError, match="does not divide"):
        ARTeacher(data, block_size=2)
    with pytest.raises(ValueError, match="context"):
        ARTeacher(data).block_mixture(2, torch.zeros(5, 1, 1, dtype=torch.float64))


@given(seed=st.integers(0, 100), sigma=st.floats(0.05, 0.95))
def test_denoiser_is_the_gaussian_posterior_mean_and_velocity_is_x_minus_it_over_sigma(seed, sigma):
    """E[x0 | x_σ] = μ + (1-σ)Σ C⁻¹(x - (1-σ)μ) for one Gaussian; v = (x_σ - E[x0|x_σ]) / σ (module doc)."""
    data = random_gaussian_sequence(seed, 3, 1)
    teacher = BidirectionalTeacher(data)
    x = torch.randn(5, 3, 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    mu, cov = data.mixture.means[0], data.mixture.covs[0]
    c = closed_form.marginal_covariance(data, sigma)
    want = mu + (data.flatten(x) - (1 - sigma) * mu) @ torch.linalg.solve(c, (1 - sigma) * cov)
    torch.testing.assert_close(teacher.denoise(x, sigma), data.unflatten(want), atol=1e-10, rtol=0)
    torch.testing.assert_close(teacher.velocity(x, sigma), (x - teacher.denoise(x, sigma)) / sigma, atol=1e-9, rtol=0)


def test_ar_teacher_boundary_errors():
    data = ar1_gaussian(4, 1)
    teacher = ARTeacher(data, block_size=2)
    eps, ctx = torch.zeros(3, 4, 1, dtype=torch.float64), torch.zeros(2, 4, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="does not match context"):
        teacher.flow_map(eps, ctx)
    model = teacher.as_blockwise()
    with pytest.raises(ValueError, match="commit at σ = 0"):
        model.commit(torch.zeros(3, 2, 1), torch.full((3, 2), 0.1), 0, [])
