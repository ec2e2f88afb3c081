"""toy.experiment: one dataset through the whole injectivity experiment on a reduced configuration — the entry's
schema and the qualitative statements of docs/theory.md (conditional expectation vs flow map); the quantitative
targets are the claims (tests/toy/test_claims.py) and the quick preset itself."""

import pytest

from cf_ref.recipes import PairTeacher
from cf_ref.timing import StageTimes
from tests.toy.experiment_configs import tiny_config
from toy.data import DatasetKind, DatasetSpec
from toy.experiment import run_dataset, stages_per_dataset, student_key

GAUSSIAN = DatasetSpec(DatasetKind.AR1_GAUSSIAN, dim=1)
MIXTURE = DatasetSpec(DatasetKind.SHARED_MODE_MIXTURE, dim=1, num_modes=2)


@pytest.fixture(scope="module")
def gaussian():
    config = tiny_config(datasets=(GAUSSIAN,))
    times = StageTimes()
    return (*run_dataset(GAUSSIAN, config, 0, times), times, config)


@pytest.fixture(scope="module")
def mixture():
    config = tiny_config(datasets=(MIXTURE,))
    return run_dataset(MIXTURE, config, 0, StageTimes())


def test_entry_schema_and_stages(gaussian):
    name, exp, plots, times, config = gaussian
    assert name == "gaussian_ar1_d1" and exp["config"]["num_frames"] == 3
    assert len(exp["closed_form"]["conditional_expectation_variance"]) == 3
    assert set(exp["students"]) == {"bidirectional-ode", "causal-ode", "bidirectional-ode-1step", "causal-ode-1step"}
    assert {s["pair_teacher"] for s in exp["students"].values()} == {t.value for t in PairTeacher}
    for s in exp["students"].values():
        assert len(s["error_to_flow_map"]) == len(s["sample_variance"]) == 3
    assert set(exp["teachers"]) == {"bidirectional", "ar"} and "energy_distance_noise" in exp["data"]
    assert len(times.stages) == stages_per_dataset(config)
    assert {"reference", "conditional_expectation/teacher_outputs", "trajectory/ar"} <= set(plots)


def test_student_keys_follow_the_init_vocabulary(gaussian):
    config = gaussian[4]
    assert student_key(PairTeacher.AR, 2, config.grid) == "causal-ode"
    assert student_key(PairTeacher.BIDIRECTIONAL, 1, config.grid) == "bidirectional-ode-1step"


@pytest.mark.parametrize("which", ["gaussian", "mixture"])
def test_bidirectional_students_sit_on_the_conditional_expectation(which, request):
    exp = request.getfixturevalue(which)[1]
    ni = exp["non_injectivity"]
    assert max(ni["ar"]) < 1e-3 and ni["bidirectional"][0] > 0.05 and ni["bidirectional"][-1] == 0
    for steps in ("", "-1step"):
        bidir, causal = exp["students"][f"bidirectional-ode{steps}"], exp["students"][f"causal-ode{steps}"]
        for i in (0, 1):  # frames that cannot see later noise: closer to the conditional expectation
            assert bidir["error_to_conditional_expectation"][i] < 0.5 * bidir["error_to_flow_map"][i]
        assert causal["error_to_flow_map"][0] < 0.25 * bidir["error_to_flow_map"][0]


def test_causal_students_beat_bidirectional_ones_on_the_mixture(mixture):
    exp = mixture[1]
    assert "closed_form" not in exp
    for steps in ("", "-1step"):
        causal, bidir = exp["students"][f"causal-ode{steps}"], exp["students"][f"bidirectional-ode{steps}"]
        assert causal["energy_distance"] < bidir["energy_distance"]
        assert causal["off_manifold_fraction"] < 0.5 * bidir["off_manifold_fraction"]


def test_paired_energy_of_a_one_step_student_is_its_unpaired_set_beside_the_ar_teacher(mixture):
    """A 1-step causal student has no re-noising: its paired samples are the unpaired set's first rows, and its
    exact partner is the AR teacher on the same noise rows (the K-step exact sampler's law: tests/toy/test_teachers)."""
    exp = mixture[1]
    one = exp["students"]["causal-ode-1step"]
    assert "paired_energy" not in exp["students"]["bidirectional-ode"]
    assert one["paired_energy"]["student"] == pytest.approx(one["energy_distance"], abs=1e-6)
    assert one["paired_energy"]["exact"] == pytest.approx(exp["teachers"]["ar"]["energy_distance"], abs=1e-5)
    assert set(exp["students"]["causal-ode"]["paired_energy"]) == {"student", "exact"}
