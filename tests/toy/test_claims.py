"""toy.claims: the claim checks on hand-made metrics documents."""

import copy

from toy.claims import check_claims


def _metrics() -> dict:
    """A hand-made metrics document: one Gaussian and one mixture, students that behave as the theory says."""
    student = {
        "pair_teacher": "bidirectional",
        "num_steps": 1,
        "error_to_flow_map": [0.6, 0.5, 0.0],
        "error_to_conditional_expectation": [0.1, 0.1, 0.0],
        "sample_variance": [0.62, 0.71, 1.0],
        "energy_distance": 0.3,
        "off_manifold_fraction": 0.5,
    }
    causal = {
        "pair_teacher": "ar",
        "num_steps": 1,
        "error_to_flow_map": [0.01, 0.01, 0.01],
        "energy_distance": 0.001,
        "off_manifold_fraction": 0.001,
    }
    exp = {
        "config": {"num_components": 1, "frame_std": [1.0, 1.0, 1.0], "frames_dependent": True},
        "non_injectivity": {"bidirectional": [0.38, 0.29, 0.0], "ar": [0.0, 0.0, 0.0]},
        "closed_form": {"few_step_sampler_variance": {"1": [0.615, 0.712, 1.0]}},
        "students": {"bidirectional-ode": student, "causal-ode": causal},
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
    broken["experiments"]["g"]["students"]["bidirectional-ode"]["error_to_conditional_expectation"][1] = 0.2
    broken["experiments"]["g"]["students"]["causal-ode"]["error_to_flow_map"][2] = 0.06
    broken["experiments"]["g"]["non_injectivity"]["ar"][0] = 0.01
    failed = {(c["dataset"], c["subject"], c["claim"][:20]) for c in check_claims(broken) if not c["holds"]}
    assert failed == {
        ("g", "bidirectional-ode", "converges to the con"),
        ("g", "causal-ode", "recovers the AR teac"),
        ("g", "causal pairs", "frame-level injectiv"),
    }
