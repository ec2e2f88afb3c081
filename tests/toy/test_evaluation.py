"""toy.evaluation: the measurement helpers against hand computations and known laws."""

import pytest
import torch

from cf_ref.injectivity import ConditionalStatistics
from cf_ref.masks import AttentionMode
from cf_ref.recipes import PairTeacher
from cf_ref.schedule import Prediction
from toy.data import ar1_gaussian, shared_mode_mixture
from toy.evaluation import (
    SampleSizes,
    data_frame_std,
    energy_noise_floor,
    pooled_rms,
    regression_errors,
    rms_per_frame,
    sample_quality,
)
from toy.networks import FrameNetConfig
from toy.pairs import PairSet
from toy.students import TrainedStudent, build_network


def test_rms_and_pooling():
    pred = torch.tensor([[[1.0, 1.0], [0.0, 2.0]], [[3.0, 1.0], [0.0, 0.0]]])
    ref = torch.zeros_like(pred)
    # frame 0: (1 + 1 + 9 + 1) / 4 = 3; frame 1: (0 + 4 + 0 + 0) / 4 = 1
    assert torch.allclose(rms_per_frame(pred, ref), torch.tensor([3.0, 1.0], dtype=torch.float64).sqrt())
    assert torch.allclose(pooled_rms(torch.tensor([[3.0, 0.0], [4.0, 0.0]])), torch.tensor([12.5**0.5, 0.0]))
    with pytest.raises(ValueError):
        rms_per_frame(pred, ref[:, :1])


def test_sample_quality_and_noise_floor():
    gen = torch.Generator().manual_seed(0)
    mix = shared_mode_mixture(3, 1)
    ref, _ = mix.sample(2000, gen)
    same, _ = mix.sample(2000, gen)
    collapsed = torch.zeros_like(same) + mix.mean()  # every sample at the mean: between the modes
    sizes = SampleSizes(variance=2000, energy=500)
    good, bad = sample_quality(same, ref, mix, sizes), sample_quality(collapsed, ref, mix, sizes)
    assert set(good) >= {
        "sample_variance",
        "variance_ratio",
        "energy_distance",
        "off_manifold_fraction",
        "mode_coverage",
    }
    assert good["off_manifold_fraction"] < 0.01 and bad["off_manifold_fraction"] == 1.0
    floor = energy_noise_floor(mix, ref[:500], 20, gen)
    assert len(floor["draws"]) == 20 and min(floor["draws"]) <= floor["mean"] <= max(floor["draws"])
    assert good["energy_distance"] < max(floor["draws"]) + 3 * floor["std"]
    assert bad["energy_distance"] > max(floor["draws"]) + 20 * floor["std"]
    gauss = ar1_gaussian(3, 1)
    g_ref, g_same = gauss.sample(2000, gen)[0], gauss.sample(2000, gen)[0]
    assert "off_manifold_fraction" not in sample_quality(g_same, g_ref, gauss, sizes)


def test_data_frame_std():
    assert torch.allclose(data_frame_std(ar1_gaussian(3, 2, std=2.0)), torch.full((3,), 2.0, dtype=torch.float64))


def test_regression_errors_of_a_zero_student_against_a_direct_computation():
    """A student that predicts x0 = 0 everywhere: every error is the RMS of the reference it is compared with."""
    g = torch.Generator().manual_seed(0)
    b, k, f, d, m = 40, 2, 3, 2, 16
    states = torch.randn(b, k, f, d, generator=g, dtype=torch.float64)
    pairs = PairSet(PairTeacher.BIDIRECTIONAL, states, torch.tensor([1.0, 0.5], dtype=torch.float64),
                    torch.randn(b, f, d, generator=g, dtype=torch.float64), states[:, 0])  # fmt: skip
    ce_pairs = pairs.head(10)
    stats = [
        ConditionalStatistics(torch.randn(10, f, d, generator=g), torch.rand(10, f, d, generator=g), torch.zeros(f))
        for _ in range(k)
    ]
    net = build_network(
        FrameNetConfig(f, d, AttentionMode.BLOCK_CAUSAL, hidden=4, depth=1, prediction=Prediction.X0), 0
    )
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    out = regression_errors(TrainedStudent(net, pairs.sigmas, []), pairs, ce_pairs, stats, m)

    def rms(x):  # [..., F, d] -> [F]
        return x.double().pow(2).mean(dim=(0, 2)).sqrt()

    torch.testing.assert_close(_t(out["error_to_flow_map"]), rms(pairs.target))  # same target at each state
    torch.testing.assert_close(_t(out["error_to_flow_map_ce_subset"]), rms(ce_pairs.target))
    ce = torch.stack([rms(s.mean) for s in stats])  # [K, F]
    torch.testing.assert_close(_t(out["error_to_conditional_expectation_per_state"]), ce)
    torch.testing.assert_close(_t(out["error_to_conditional_expectation"]), ce.pow(2).mean(0).sqrt())
    mc = torch.stack([(s.variance.double() / m).mean(dim=(0, 2)).sqrt() for s in stats])
    torch.testing.assert_close(_t(out["conditional_expectation_mc_error"]), mc.pow(2).mean(0).sqrt())
    debiased = (ce.pow(2) - mc.pow(2)).clamp_min(0)
    torch.testing.assert_close(_t(out["error_to_conditional_expectation_debiased"]), debiased.mean(0).sqrt())
    median = pairs.target.pow(2).mean(dim=2).median(dim=0).values.sqrt()
    torch.testing.assert_close(_t(out["median_error_to_flow_map"]), median)


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)
