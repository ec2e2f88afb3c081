"""full.stages.ode: the student regresses onto the pairs; pairs made for another σ list or block size are refused."""

from __future__ import annotations

import dataclasses

import pytest

from cf_ref.recipes import PairTeacher
from cf_ref.schedule import FewStepSchedule
from full.data import DataError, SetKind, TensorSet
from full.stages.ode import check_pairs
from tests.full.stages.tiny_run import decrease


def test_student_loss_decreases(run):
    first, last = decrease(f"{run.out}/ode/metrics.jsonl", "student_loss")
    assert last < 0.8 * first, (first, last)


def test_pairs_must_fit_the_run(run):
    pairs = TensorSet(f"{run.out}/ode-pairs", SetKind.ODE_PAIRS)
    assert check_pairs(pairs, run) is PairTeacher.AR
    two_step = dataclasses.replace(run, schedule=FewStepSchedule.uniform(2, ode_steps=run.schedule.ode_steps))
    with pytest.raises(DataError, match="this run's few-step list is"):
        check_pairs(pairs, two_step)
    other_blocks = dataclasses.replace(run, model=dataclasses.replace(run.model, block_size=1))
    with pytest.raises(DataError, match="pairs were made with block size 2"):
        check_pairs(pairs, other_blocks)
