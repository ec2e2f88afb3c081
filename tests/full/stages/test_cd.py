"""full.stages.cd: the consistency-distillation student learns along the AR teacher's PF-ODE."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cf_ref.distill.cd import CDTimes, consistency_distillation_loss, sample_grid_indices
from cf_ref.ema import EmaFirstUpdate
from cf_ref.io import load_tensors
from cf_ref.masks import AttentionMode
from full.config import TimeDtype
from full.data import TensorSet
from full.distributed import Runner
from full.recipes import Stage
from full.stage_inputs import final_weights
from full.stages import cd
from full.stages.batches import stage_batches
from full.stages.fields import guided_field, velocity_field
from full.stages.models import build_model
from full.stages.randomness import step_random
from tests.full.stages.tiny_run import CTX, decrease


def test_student_loss_decreases(run):
    first, last = decrease(f"{run.out}-pp/cd/metrics.jsonl", "student_loss")
    assert last < 0.8 * first, (first, last)


def test_exports_the_student_and_its_ema_target(run):
    student = load_tensors(f"{run.out}-pp/cd/final/model.safetensors")
    target = load_tensors(f"{run.out}-pp/cd/final/ema.safetensors")
    assert student.keys() == target.keys()
    assert any(not (student[k] == target[k]).all() for k in student)  # the EMA lags the student


def _cd_models(config):
    student = Runner(build_model(config, final_weights(config, Stage.AR_DIFFUSION), "student"))
    return student, student, student  # student = EMA target = teacher at the start of the stage


@pytest.mark.parametrize("time_dtype", list(TimeDtype))
def test_cd_time_dtype_reaches_the_loss(run, time_dtype):
    """``cd.time_dtype``: float32 reads the grid exactly; bfloat16 reads it through the authors' arithmetic
    (:meth:`cf_ref.distill.cd.CDTimes.rounded`, checked against their code in tests/cf_ref/distill/test_cd.py)."""
    config = dataclasses.replace(run, cd=dataclasses.replace(run.cd, time_dtype=time_dtype))
    feed = stage_batches(TensorSet(config.data.latents), config, CTX, 2, 1, "test")
    models = _cd_models(config)
    with torch.no_grad():
        loss = cd.cd_loss(config, CTX, feed, models, 0, 0)
        batch = feed.fetch(0, 0)
        x0, text = batch["latents"], batch["text"]
        rnd = step_random(config, CTX, Stage.CD.value, 0, 0, "loss")
        eps = rnd.normal(x0.shape, x0.device)
        index = sample_grid_indices(x0.shape[0], x0.shape[1], config.schedule.ode_steps, generator=rnd.cpu)
        b, tf = config.model.block_size, AttentionMode.TEACHER_FORCING
        fields = [velocity_field(m, text, tf, b, x0) for m in models[:2]]
        teacher = guided_field(models[2], text, feed.negative(2), config.cd.guidance_scale, tf, b, x0)
        grid = config.schedule.grid(torch.float32)
        exact = consistency_distillation_loss(*fields, teacher, x0, eps, grid, index)
        rounded = CDTimes.rounded(config.schedule.grid(), config.schedule.shift)
        published = consistency_distillation_loss(*fields, teacher, x0, eps, grid, index, times=rounded)
    expected, other = (exact, published) if time_dtype is TimeDtype.FLOAT32 else (published, exact)
    torch.testing.assert_close(loss, expected)
    assert float(loss) != pytest.approx(float(other), rel=1e-4)


@pytest.mark.parametrize("first", list(EmaFirstUpdate))
def test_cd_ema_first_update_reaches_the_target(run, first):
    """``cd.ema_first_update``: the plan's target copies (cf-ref) or blends (the authors' EMA_FSDP) at its first
    update; the loop's EMA rule itself is tested in tests/full/test_train.py."""
    config = dataclasses.replace(run, cd=dataclasses.replace(run.cd, ema_first_update=first))
    assert cd.plan(config, CTX).trainees["student"].ema_first is first
