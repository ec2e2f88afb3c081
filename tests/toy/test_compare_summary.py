"""toy.compare_summary: mean ± std over seeds against hand computations, per stage and per frame."""

import math

import pytest

from toy.compare_summary import mean_std, metric, summarise_recipe


def test_mean_std_is_the_sample_standard_deviation():
    stat = mean_std([1.0, 2.0, 3.0])
    assert stat["mean"] == 2.0 and stat["std"] == pytest.approx(1.0)  # sqrt(((-1)² + 0² + 1²) / (3 - 1))
    assert stat["values"] == [1.0, 2.0, 3.0]
    assert mean_std([5.0])["std"] == 0.0


def test_metric_averages_a_per_frame_list_and_a_missing_one_is_nan():
    assert metric({"variance_ratio": [0.5, 1.0, 1.5]}, "variance_ratio") == pytest.approx(1.0)
    assert metric({"energy_distance": 0.25}, "energy_distance") == 0.25
    assert math.isnan(metric({}, "off_manifold_fraction"))


def test_recipe_summary_is_over_seeds_and_frames():
    def record(ed: float, ratios: list[float], seconds: float) -> dict:
        return {"seconds": seconds, "samples": {"energy_distance": ed, "variance_ratio": ratios}}

    per_seed = {
        s: {"base": record(0, [1, 1], 1.0), "init": record(0.1 * s, [0.5, 1.0], 2.0), "dmd": record(0.0, [1, 1], 3.0)}
        for s in (1, 2)
    }
    out = summarise_recipe(per_seed)
    assert out["init"]["energy_distance"]["values"] == pytest.approx([0.1, 0.2])
    assert out["init"]["variance_ratio"]["mean"] == pytest.approx(0.75)  # averaged over frames
    assert [s["mean"] for s in out["init"]["variance_ratio_per_frame"]] == [0.5, 1.0]
    assert math.isnan(out["final"]["off_manifold_fraction"]["mean"])  # not measured: NaN, not 0
    assert out["seconds"]["total"]["mean"] == 6.0 and "ar_teacher" not in out["seconds"]
