"""toy.experiment_config: the presets' invariants and the settings a run records."""

import json
from dataclasses import replace

import pytest

from cf_ref.recipes import PairTeacher
from toy.claims import ENERGY_FAMILY_LEVEL, energy_threshold
from toy.data import CORE_DATASETS, DatasetKind
from toy.experiment_config import preset_config
from toy.preset import Preset


def test_paper_preset_adds_the_independent_control_and_is_larger():
    quick, paper = preset_config(Preset.QUICK), preset_config(Preset.PAPER)
    assert quick.datasets == CORE_DATASETS and paper.datasets[: len(CORE_DATASETS)] == CORE_DATASETS
    assert paper.datasets[-1].kind is DatasetKind.INDEPENDENT_GAUSSIAN
    assert paper.student.hidden > quick.student.hidden and paper.num_pairs > quick.num_pairs


@pytest.mark.parametrize("preset", list(Preset))
def test_presets_draw_enough_fresh_data_sets_for_the_energy_checks_level(preset):
    """One energy-distance check per student of causal pairs; the draws must reach the per-check level."""
    config = preset_config(preset)
    level = ENERGY_FAMILY_LEVEL / (len(config.datasets) * len(config.grid.student_steps))
    _, reached = energy_threshold([0.0] * config.noise_draws, level)
    assert reached <= level


def test_describe_is_json_ready_and_lists_every_student_list():
    settings = preset_config(Preset.QUICK).describe()
    json.dumps(settings)
    assert settings["grid"]["method"] == "rk4" and settings["datasets"][0] == {
        "kind": "gaussian_ar1",
        "dim": 1,
        "num_modes": 2,
    }
    assert settings["grid"]["student_sigmas"]["1"] == [1.0] and len(settings["grid"]["student_sigmas"]["4"]) == 4


def test_inconsistent_sizes_are_refused():
    quick = preset_config(Preset.QUICK)
    with pytest.raises(ValueError, match="num_ce_pairs <= num_eval_pairs"):
        replace(quick, num_ce_pairs=quick.num_eval_pairs + 1)
    with pytest.raises(ValueError, match="at least one dataset"):
        replace(quick, datasets=())


def test_students_of_causal_pairs_may_have_their_own_configuration():
    quick, paper = preset_config(Preset.QUICK), preset_config(Preset.PAPER)
    assert quick.student_of(PairTeacher.AR).optim.steps > quick.student_of(PairTeacher.BIDIRECTIONAL).optim.steps
    assert replace(quick.student_of(PairTeacher.AR), optim=quick.student.optim) == quick.student  # only the steps
    assert paper.student_of(PairTeacher.AR) is paper.student_of(PairTeacher.BIDIRECTIONAL) is paper.student
    assert quick.describe()["causal_student"]["optim"]["steps"] == 1000 and paper.describe()["causal_student"] is None


def test_students_of_gaussian_data_may_train_fewer_steps():
    quick, paper = preset_config(Preset.QUICK), preset_config(Preset.PAPER)
    for teacher in PairTeacher:
        mixture, gaussian = quick.student_of(teacher), quick.student_of(teacher, gaussian=True)
        assert gaussian.optim.steps == quick.gaussian_steps < mixture.optim.steps
        assert replace(gaussian, optim=mixture.optim) == mixture  # only the steps
        assert paper.student_of(teacher, gaussian=True) is paper.student_of(teacher)
    with pytest.raises(ValueError, match="gaussian_steps"):
        replace(quick, gaussian_steps=0)
