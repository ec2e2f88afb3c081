"""toy.data: presets against their definitions, element by element, and the container's checks."""

import math

import pytest
import torch

from toy import gmm
from toy.data import (
    DatasetKind,
    DatasetSpec,
    SequenceData,
    ar1_gaussian,
    frames_dependent,
    independent_gaussian,
    shared_mode_mixture,
)


@pytest.mark.parametrize("frames,dim,rho,std,drift", [(4, 1, 0.9, 1.0, 0.5), (3, 3, 0.6, 0.7, -0.2)])
def test_ar1_gaussian_is_its_definition_element_by_element(frames, dim, rho, std, drift):
    """Cov(x_{f,a}, x_{g,b}) = std² ρ^{|f-g|} 0.5^{|a-b|}, mean_{f,a} = drift·f, on the frame-major flat layout."""
    data = ar1_gaussian(frames, dim, rho, std, drift)
    cov, mean = data.covariance(), data.mean()
    for f in range(frames):
        for a in range(dim):
            assert float(mean[f, a]) == pytest.approx(drift * f)
            for g in range(frames):
                for b in range(dim):
                    want = std**2 * rho ** abs(f - g) * 0.5 ** abs(a - b)
                    assert float(cov[f * dim + a, g * dim + b]) == pytest.approx(want, abs=1e-12)
    x, _ = data.sample(100_000, torch.Generator().manual_seed(0))
    lag1 = float(torch.cov(torch.stack([x[:, 0, 0], x[:, 1, 0]]))[0, 1])
    assert lag1 == pytest.approx(std**2 * rho, abs=0.02)  # the samples carry the AR(1) lag-1 covariance


def test_independent_gaussian_has_block_diagonal_covariance():
    cov = independent_gaussian(3, 2).covariance()
    for f in range(3):
        for g in range(3):
            block = cov[2 * f : 2 * f + 2, 2 * g : 2 * g + 2]
            assert bool((block == 0).all()) == (f != g)


@pytest.mark.parametrize("dim", [1, 2])
def test_shared_mode_mixture_is_its_definition(dim):
    data = shared_mode_mixture(num_frames=4, dim=dim, num_modes=3, radius=1.5, within_std=0.25, rho=0.5, turn=0.35)
    means = data.component_means()
    for k in range(3):
        for f in range(4):
            if dim == 1:
                want = [1.5 * (2 * k / 2 - 1) + 0.35 * f]
            else:
                angle = 2 * math.pi * k / 3 + 0.35 * f
                want = [1.5 * math.cos(angle), 1.5 * math.sin(angle)]
            torch.testing.assert_close(means[k, f], torch.tensor(want, dtype=torch.float64))
    torch.testing.assert_close(data.mixture.log_weights.exp(), torch.full((3,), 1 / 3, dtype=torch.float64))
    within = data.mixture.covs[0]
    for i in range(4 * dim):
        for j in range(4 * dim):
            (f, a), (g, b) = divmod(i, dim), divmod(j, dim)
            want = 0.25**2 * 0.5 ** abs(f - g) * (a == b)
            assert float(within[i, j]) == pytest.approx(want, abs=1e-12)
    # the mode is shared by all frames: frames of one sample sit on one trajectory
    x, comp = data.sample(2000, torch.Generator().manual_seed(1))
    residual = x - means[comp]
    assert float(residual.std()) == pytest.approx(0.25, rel=0.05)


def test_flatten_is_frame_major_and_frame_index_selects_frames():
    data = ar1_gaussian(3, 2)
    x = torch.arange(12.0).reshape(2, 3, 2)
    flat = data.flatten(x)
    assert flat[1].tolist() == [6.0, 7.0, 8.0, 9.0, 10.0, 11.0]
    torch.testing.assert_close(data.unflatten(flat), x)
    assert data.frame_index([0, 2]).tolist() == [0, 1, 4, 5]
    torch.testing.assert_close(flat[:, data.frame_index([1])], x[:, 1])
    cfg = data.config()
    assert cfg["num_frames"] == 3 and len(cfg["mean"]) == 6 and "component_means" in shared_mode_mixture().config()


def test_bad_configurations_are_rejected_with_what_was_expected():
    mix = ar1_gaussian(3, 1).mixture
    with pytest.raises(ValueError, match="expected num_frames·dim = 4"):
        SequenceData("bad", 2, 2, mix)
    with pytest.raises(ValueError, match="num_frames, dim >= 1"):
        SequenceData("bad", 0, 1, mix)
    batched = gmm.Mixture(mix.log_weights[None], mix.means[None], mix.covs)
    with pytest.raises(ValueError, match="unbatched"):
        SequenceData("bad", 3, 1, batched)
    with pytest.raises(ValueError, match=r"rho must lie in \[0, 1\)"):
        ar1_gaussian(rho=1.0)
    with pytest.raises(ValueError, match="std must be > 0"):
        ar1_gaussian(std=0.0)
    with pytest.raises(ValueError, match="num_modes >= 2"):
        shared_mode_mixture(num_modes=1)
    with pytest.raises(ValueError, match="within_std > 0"):
        shared_mode_mixture(within_std=0.0)
    with pytest.raises(ValueError, match="-1 < rho < 1"):
        shared_mode_mixture(rho=1.0)


@pytest.mark.parametrize(
    "spec,name,dependent",
    [
        (DatasetSpec(DatasetKind.AR1_GAUSSIAN, dim=2), "gaussian_ar1_d2", True),
        (DatasetSpec(DatasetKind.INDEPENDENT_GAUSSIAN, dim=1), "gaussian_independent_d1", False),
        (DatasetSpec(DatasetKind.SHARED_MODE_MIXTURE, dim=2, num_modes=4), "mixture_k4_d2", True),
    ],
)
def test_dataset_specs_build_their_preset_and_say_whether_frames_depend(spec, name, dependent):
    data = spec.build(3)
    assert data.name == name and data.num_frames == 3 and frames_dependent(data) is dependent
    cov = data.covariance()
    cross = cov[: spec.dim, spec.dim :]  # frame 0 against the later frames
    assert bool((cross.abs() > 1e-12).any()) is dependent
