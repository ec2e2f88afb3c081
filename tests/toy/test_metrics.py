import itertools

import pytest
import torch

from toy import metrics
from toy.data import shared_mode_mixture


def _brute_energy(x, y):
    a, b = x.reshape(len(x), -1).double(), y.reshape(len(y), -1).double()

    def mean_dist(p, q, skip_diag):
        tot, cnt = 0.0, 0
        for i, j in itertools.product(range(len(p)), range(len(q))):
            if skip_diag and i == j:
                continue
            tot += float((p[i] - q[j]).norm())
            cnt += 1
        return tot / cnt

    return 2 * mean_dist(a, b, False) - mean_dist(a, a, True) - mean_dist(b, b, True)


def test_energy_distance_brute_force_and_behaviour():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 2, 2, generator=g), torch.randn(9, 2, 2, generator=g) + 0.5
    assert metrics.energy_distance(x, y) == pytest.approx(_brute_energy(x, y), rel=1e-9)
    same_a, same_b = torch.randn(2000, 2, 1, generator=g), torch.randn(2000, 2, 1, generator=g)
    assert abs(metrics.energy_distance(same_a, same_b)) < 0.01
    assert metrics.energy_distance(same_a, same_b + 1.0) > 0.5


def test_sliced_w2_of_a_shift_is_the_projected_shift():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5000, 1, 1, generator=g)
    assert metrics.sliced_wasserstein2(x, x + 2.0, generator=g) == pytest.approx(2.0, rel=1e-6)


def test_off_manifold_and_mode_coverage_on_data_and_on_a_collapsed_sampler():
    data = shared_mode_mixture(4, 2, num_modes=4)
    g = torch.Generator().manual_seed(2)
    x, comp = data.sample(20_000, g)
    assert metrics.off_manifold_fraction(x, data) < 0.003  # ≈ 1 - level
    assert metrics.mode_coverage(x, data) == 1.0
    shares = metrics.mode_shares(x, data)
    torch.testing.assert_close(shares, torch.bincount(comp, minlength=4).double() / len(comp))
    half = x[comp < 2]
    assert metrics.mode_coverage(half, data) == 0.5
    between = 0.5 * (data.component_means()[0] + data.component_means()[1])  # mode average: off-manifold
    assert metrics.off_manifold_fraction(between[None].expand(10, -1, -1), data) == 1.0


def test_per_frame_variance_and_summary_keys():
    data = shared_mode_mixture(3, 1, 2)
    g = torch.Generator().manual_seed(3)
    x, _ = data.sample(500, g)
    ref, _ = data.sample(500, g)
    torch.testing.assert_close(metrics.per_frame_variance(x), x.double().var(0).sum(-1))
    s = metrics.summary(x, ref, data)
    assert {"energy_distance", "sample_variance", "variance_ratio", "off_manifold_fraction", "mode_coverage"} <= set(s)
    with pytest.raises(ValueError, match=r"\[n, N, d\]"):
        metrics.per_frame_variance(torch.zeros(3, 4))


def test_sliced_w2_of_a_scaled_isotropic_gaussian_is_the_scale_gap():
    # every 1-D projection of N(0, I) vs N(0, 4I) is N(0, 1) vs N(0, 4): W2 = |1 - 2| = 1 in every direction
    g = torch.Generator().manual_seed(4)
    x = torch.randn(20_000, 2, 2, generator=g, dtype=torch.float64)
    y = 2 * torch.randn(20_000, 2, 2, generator=g, dtype=torch.float64)
    assert metrics.sliced_wasserstein2(x, y, num_projections=32, generator=g) == pytest.approx(1.0, abs=0.03)


def test_mahalanobis_matches_a_direct_solve():
    data = shared_mode_mixture(3, 2, num_modes=3)
    x = torch.randn(5, 3, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    d2 = metrics.mahalanobis_sq(x, data)
    for k in range(3):
        r = data.flatten(x) - data.mixture.means[k]
        want = (r * torch.linalg.solve(data.mixture.covs[k], r.T).T).sum(-1)
        torch.testing.assert_close(d2[:, k], want)


def test_metric_boundary_errors():
    data = shared_mode_mixture(3, 1, 2)
    with pytest.raises(ValueError, match=r"share the sequence shape"):
        metrics.energy_distance(torch.zeros(4, 3, 1), torch.zeros(4, 2, 1))
    with pytest.raises(ValueError, match="at least 2 samples"):
        metrics.energy_distance(torch.zeros(1, 3, 1), torch.zeros(4, 3, 1))
    with pytest.raises(ValueError, match="equal sample sizes"):
        metrics.sliced_wasserstein2(torch.zeros(4, 3, 1), torch.zeros(5, 3, 1))
    with pytest.raises(ValueError, match=r"samples must be \[n, 3, 1\]"):
        metrics.off_manifold_fraction(torch.zeros(4, 2, 1), data)
