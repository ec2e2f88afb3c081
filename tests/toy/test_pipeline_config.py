"""toy.pipeline_config: the schedule is the published FewStepSchedule and refuses a student list off the teacher
grid; the presets differ only in size."""

import pytest

from cf_ref.schedule import DEFAULT_SHIFT, FewStepSchedule
from toy.pipeline_config import RealScore, ScheduleConfig, pipeline_config
from toy.preset import Preset


def test_schedule_is_the_published_one_and_rejects_an_incompatible_grid():
    schedule = pipeline_config(Preset.QUICK).schedule.few_step
    assert schedule.shift == DEFAULT_SHIFT and schedule.student_indices() == [0, 12, 24, 36]
    with pytest.raises(ValueError, match="multiple of the student's 4 steps"):
        ScheduleConfig(FewStepSchedule(ode_steps=10))


def test_presets_share_everything_but_size():
    quick, paper = pipeline_config(Preset.QUICK), pipeline_config(Preset.PAPER, RealScore.EXACT)
    assert paper.network.hidden > quick.network.hidden and paper.budget.dmd_steps > quick.budget.dmd_steps
    assert paper.schedule == quick.schedule and paper.dataset == quick.dataset
    assert paper.dmd.real_score is RealScore.EXACT and quick.dmd.real_score is RealScore.LEARNED
