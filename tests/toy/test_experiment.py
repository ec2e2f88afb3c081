"""End to end on a reduced quick preset: the qualitative claims, the output files, determinism, the CLI.

Sizes are cut so the module runs in seconds; the assertions are the qualitative statements of docs/toy.md
(conditional expectation vs flow map), not the quick preset's quantitative targets.
"""

import json

import pytest
from click.testing import CliRunner

from cf_ref.cli import main
from cf_ref.solvers import Method
from toy.evaluation import SampleSizes
from toy.experiment import (
    DatasetKind,
    DatasetSpec,
    Preset,
    preset_config,
    reduced,
    run,
    write_outputs,
)
from toy.pairs import GridConfig
from toy.students import StudentConfig
from toy.training import OptimConfig

GAUSSIAN = "gaussian_ar1_d1"
MIXTURE = "mixture_k2_d1"


def _config(steps: int = 300, datasets=None):
    return reduced(
        preset_config(Preset.QUICK),
        datasets=datasets
        or (
            DatasetSpec(DatasetKind.AR1_GAUSSIAN, dim=1),
            DatasetSpec(DatasetKind.SHARED_MODE_MIXTURE, dim=1, num_modes=2),
        ),
        num_frames=3,
        grid=GridConfig(teacher_steps=8, shift=2.0, method=Method.RK4, student_steps=(2, 1)),
        student=StudentConfig(
            hidden=48, depth=3, batch_size=256, optim=OptimConfig(steps=steps, lr=3e-2, final_lr_fraction=0.01)
        ),
        num_pairs=4096,
        num_eval_pairs=1024,
        num_ce_pairs=48,
        num_resamples=32,
        samples=SampleSizes(variance=2048, energy=384),
        noise_draws=5,
        plot_samples=200,
        plot_trajectories=6,
        figure_resamples=48,
    )


@pytest.fixture(scope="module")
def result():
    return run(_config(), seed=0, progress=False)


def test_schema(result):
    metrics, plots, timings = result
    assert metrics["preset"] == "quick" and metrics["seed"] == 0
    exp = metrics["experiments"][GAUSSIAN]
    assert exp["config"]["num_frames"] == 3 and exp["config"]["dim"] == 1
    assert len(exp["config"]["mean"]) == 3 and len(exp["config"]["covariance"]) == 3
    assert len(exp["closed_form"]["conditional_expectation_variance"]) == 3
    assert set(exp["students"]) == {"bidirectional_ode", "causal_ode", "bidirectional_ode_1step", "causal_ode_1step"}
    for s in exp["students"].values():
        for key in ("error_to_flow_map", "error_to_conditional_expectation", "sample_variance"):
            assert len(s[key]) == 3
        assert isinstance(s["energy_distance"], float)
    mix = metrics["experiments"][MIXTURE]
    assert "closed_form" not in mix
    assert isinstance(mix["students"]["causal_ode"]["off_manifold_fraction"], float)
    assert isinstance(mix["teachers"]["ar"]["off_manifold_fraction"], float)
    assert set(mix["teachers"]) == {"bidirectional", "ar"}
    assert f"{MIXTURE}/conditional_expectation/teacher_outputs" in plots
    assert timings["total_s"] > 0
    json.dumps(metrics)  # JSON-ready


def test_qualitative_claims(result):
    metrics, _, _ = result
    for name, exp in metrics["experiments"].items():
        ni = exp["non_injectivity"]
        assert max(ni["causal"]) < 1e-3, name
        assert ni["bidirectional"][0] > 0.05, name
        assert ni["bidirectional"][-1] == 0, name  # the last frame sees all the noise
        for key in ("bidirectional_ode", "bidirectional_ode_1step"):
            s = exp["students"][key]
            for i in (0, 1):  # frames that cannot see later noise: closer to the conditional expectation
                assert s["error_to_conditional_expectation"][i] < 0.5 * s["error_to_flow_map"][i], (name, key, i)
        for steps in ("", "_1step"):
            causal, bidir = exp["students"][f"causal_ode{steps}"], exp["students"][f"bidirectional_ode{steps}"]
            assert causal["error_to_flow_map"][0] < 0.25 * bidir["error_to_flow_map"][0], (name, steps)
    mix = metrics["experiments"][MIXTURE]
    for steps in ("", "_1step"):
        causal, bidir = mix["students"][f"causal_ode{steps}"], mix["students"][f"bidirectional_ode{steps}"]
        assert causal["energy_distance"] < bidir["energy_distance"]
        assert causal["off_manifold_fraction"] < 0.5 * bidir["off_manifold_fraction"]


def test_outputs_and_replot(result, tmp_path):
    metrics, plots, timings = result
    out = write_outputs(tmp_path / "run", metrics, plots, timings)
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    summary = (out / "summary.md").read_text()
    assert "| dataset |" in summary and GAUSSIAN in summary
    figures = tmp_path / "figures"
    cli = CliRunner().invoke(main, ["toy", "plots", "--from", str(out), "--out", str(figures), "--dpi", "40"])
    assert cli.exit_code == 0, cli.output
    names = {p.name for p in figures.iterdir() if p.stat().st_size > 0}
    for stem in (f"samples_{MIXTURE}", f"trajectories_{GAUSSIAN}", f"conditional_expectation_{MIXTURE}", "errors"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names


def test_same_seed_same_numbers():
    config = _config(steps=30, datasets=(DatasetSpec(DatasetKind.SHARED_MODE_MIXTURE, dim=2, num_modes=3),))
    a, _, _ = run(config, seed=5, progress=False)
    b, _, _ = run(config, seed=5, progress=False)
    c, _, _ = run(config, seed=6, progress=False)
    assert a == b
    assert a["experiments"] != c["experiments"]


def test_cli_help_and_missing_run(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["toy", "run", "--help"]).exit_code == 0
    missing = runner.invoke(main, ["toy", "plots", "--from", str(tmp_path)])
    assert missing.exit_code != 0 and "metrics.json" in str(missing.exception)
