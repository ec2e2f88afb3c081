"""toy.claims: the claim checks on hand-made metrics documents; a deliberately wrong teacher fails a theorem check
and makes ``cf-ref toy run`` exit non-zero."""

import copy
import dataclasses
import json
from dataclasses import replace

import torch
from click.testing import CliRunner

from cf_ref.cli import main
from tests.toy.experiment_configs import tiny_config
from toy.claims import EXPECTATION, THEOREM, check_claims, failed_theorems, tally
from toy.data import DatasetKind, DatasetSpec
from toy.teachers import ARTeacher


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
        "closed_form": {
            "few_step_sampler_variance": {"1": [0.615, 0.712, 1.0]},
            "lost_variance": [0.385, 0.288, 0.0],
            "data_variance": [1.0, 1.0, 1.0],
        },
        "students": {"bidirectional-ode": student, "causal-ode": causal},
        "teachers": {"ar": {"energy_distance": 0.0, "off_manifold_fraction": 0.001}},
        "data": {"energy_distance_noise": {"draws": [-0.002, 0.0, 0.003]}},
    }
    mix = copy.deepcopy(exp)
    mix["config"]["num_components"] = 2
    del mix["closed_form"]
    settings = {"samples": {"variance": 8192}, "num_ce_pairs": 128, "num_resamples": 64}
    return {"settings": settings, "experiments": {"g": exp, "m": mix}}


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


def test_theorem_checks_are_told_apart_from_expectations_and_margins_carry_the_sign():
    claims = check_claims(_metrics())
    theorems = {(c["dataset"], c["subject"], c["statement"]) for c in claims if c["kind"] == THEOREM}
    assert theorems == {
        ("g", "causal pairs", "Prop. 2"),
        ("m", "causal pairs", "Prop. 2"),
        ("g", "bidirectional pairs", "Prop. 3"),
        ("m", "bidirectional pairs", "Prop. 3"),
        ("g", "bidirectional pairs", "Prop. 4"),  # the closed-form index: Gaussian only
        ("g", "bidirectional-ode", "Prop. 1"),
        ("m", "bidirectional-ode", "Prop. 1"),
    }
    assert tally(claims) == {THEOREM: {"held": 7, "total": 7}, EXPECTATION: {"held": 9, "total": 9}}
    for c in claims:
        sign = 1 if c["relation"] == ">" else -1
        assert c["margin"] == sign * (c["value"] - c["threshold"]) and (c["margin"] >= 0) == c["holds"]
    # the closed-form index: 4 Monte Carlo sd at eta = 0.385, 128 outer samples, 64 copies -> 0.120
    index = next(c for c in claims if c["statement"] == "Prop. 4")
    assert abs(index["threshold"] - 4 * 0.385 * 0.615 * (2 / 127 + 2 / (63 * 128)) ** 0.5) < 1e-5
    off = _metrics()
    off["experiments"]["g"]["non_injectivity"]["bidirectional"][1] = 0.29 + 0.13  # more than 4 sd from 0.288
    assert [c["statement"] for c in failed_theorems(check_claims(off))] == ["Prop. 4"]
    worse = _metrics()
    worse["experiments"]["m"]["students"]["causal-ode"]["off_manifold_fraction"] = 0.02
    (missed,) = [c for c in check_claims(worse) if not c["holds"]]
    assert missed["kind"] == EXPECTATION and missed["margin"] < 0 and not failed_theorems(check_claims(worse))


class PeekingARTeacher(ARTeacher):
    """A deliberately wrong AR teacher: frame i's end point also reads the next frame's state (leaked noise)."""

    def flow_map(self, x, context, *args, **kwargs):
        out = super().flow_map(x, context, *args, **kwargs)
        end = out.end.clone()
        end[..., :-1, :] += 0.5 * x[..., 1:, :]
        return dataclasses.replace(out, end=end)


def test_a_wrong_teacher_fails_a_theorem_check_and_the_run_exits_non_zero(tmp_path, monkeypatch):
    config = replace(tiny_config(steps=300, datasets=(DatasetSpec(DatasetKind.AR1_GAUSSIAN, dim=1),)), num_ce_pairs=16)
    monkeypatch.setattr("toy.experiment_config.preset_config", lambda preset: config)
    monkeypatch.setattr("toy.conditional.ARTeacher", PeekingARTeacher)
    args = ["toy", "run", "--out", str(tmp_path), "--workers", "1", "--no-plots"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 3, result.output
    assert "THEOREM CHECK FAILED (a bug): gaussian_ar1_d1, causal pairs: frame-level injective" in result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [c["statement"] for c in failed_theorems(metrics["claims"])] == ["Prop. 2"]  # nothing else
    assert metrics["claim_counts"][THEOREM]["held"] == metrics["claim_counts"][THEOREM]["total"] - 1
    assert "## Theorem checks" in (tmp_path / "summary.md").read_text()
    monkeypatch.setattr("toy.conditional.ARTeacher", ARTeacher)  # the exact teacher: every theorem check holds
    right = CliRunner().invoke(main, [*args, "--overwrite"])
    assert right.exit_code == 0, right.output
    assert (
        torch.tensor(
            json.loads((tmp_path / "metrics.json").read_text())["experiments"]["gaussian_ar1_d1"]["non_injectivity"][
                "ar"
            ]
        )
        .abs()
        .max()
        < 1e-3
    )
