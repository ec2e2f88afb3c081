"""toy.evaluation and toy.claims: the measurement helpers and the claim checks on hand-made metrics."""

import copy

import pytest
import torch

from toy.claims import check_claims
from toy.data import ar1_gaussian, shared_mode_mixture
from toy.evaluation import SampleSizes, data_frame_std, energy_noise_floor, pooled_rms, rms_per_frame, sample_quality


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


def _metrics() -> dict:
    """A hand-made metrics document: one Gaussian and one mixture, students that behave as the theory says."""
    student = {
        "route": "bidirectional",
        "num_steps": 1,
        "error_to_flow_map": [0.6, 0.5, 0.0],
        "error_to_conditional_expectation": [0.1, 0.1, 0.0],
        "sample_variance": [0.62, 0.71, 1.0],
        "energy_distance": 0.3,
        "off_manifold_fraction": 0.5,
    }
    causal = {
        "route": "causal",
        "num_steps": 1,
        "error_to_flow_map": [0.01, 0.01, 0.01],
        "energy_distance": 0.001,
        "off_manifold_fraction": 0.001,
    }
    exp = {
        "config": {"num_components": 1, "frame_std": [1.0, 1.0, 1.0], "frames_dependent": True},
        "non_injectivity": {"bidirectional": [0.38, 0.29, 0.0], "causal": [0.0, 0.0, 0.0]},
        "closed_form": {"few_step_sampler_variance": {"1": [0.615, 0.712, 1.0]}},
        "students": {"bidirectional_ode": student, "causal_ode": causal},
        "teachers": {"ar": {"energy_distance": 0.0, "off_manifold_fraction": 0.001}},
        "data": {"energy_distance_noise": {"draws": [-0.002, 0.0, 0.003]}},
    }
    mix = copy.deepcopy(exp)
    mix["config"]["num_components"] = 2
    del mix["closed_form"]
    return {"settings": {"samples": {"variance": 8192}}, "experiments": {"g": exp, "m": mix}}


def test_claims_hold_and_fail_where_they_should():
    metrics = _metrics()
    claims = check_claims(metrics)
    assert all(c["holds"] for c in claims), [c for c in claims if not c["holds"]]
    assert sum(c["dataset"] == "m" and "clearly" in c["claim"] for c in claims) == 2
    broken = _metrics()
    broken["experiments"]["g"]["students"]["bidirectional_ode"]["error_to_conditional_expectation"][1] = 0.2
    broken["experiments"]["g"]["students"]["causal_ode"]["error_to_flow_map"][2] = 0.06
    broken["experiments"]["g"]["non_injectivity"]["causal"][0] = 0.01
    failed = {(c["dataset"], c["subject"], c["claim"][:20]) for c in check_claims(broken) if not c["holds"]}
    assert failed == {
        ("g", "bidirectional_ode", "converges to the con"),
        ("g", "causal_ode", "recovers the AR teac"),
        ("g", "causal pairs", "frame-level injectiv"),
    }
