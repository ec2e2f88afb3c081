"""full.stages.cd: the consistency-distillation student learns along the AR teacher's PF-ODE."""

from __future__ import annotations

from cf_ref.io import load_tensors
from tests.full.stages.tiny_run import decrease


def test_student_loss_decreases(run):
    first, last = decrease(f"{run.out}/cd/metrics.jsonl", "student_loss")
    assert last < 0.8 * first, (first, last)


def test_exports_the_student_and_its_ema_target(run):
    student = load_tensors(f"{run.out}/cd/final/model.safetensors")
    target = load_tensors(f"{run.out}/cd/final/ema.safetensors")
    assert student.keys() == target.keys()
    assert any(not (student[k] == target[k]).all() for k in student)  # the EMA lags the student
