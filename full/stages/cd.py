r"""Stage ``cd``: causal consistency distillation along the AR teacher's PF-ODE (Causal Forcing++).

No stored pairs: from a clean video :math:`x_0` and noise ε, with the schedule's shifted N-step grid
(``config.schedule.grid()``, N = 48) and one grid index n per video (:func:`cf_ref.distill.cd.sample_grid_indices`),

.. math::
    x_n = (1-\sigma_n)x_0 + \sigma_n\varepsilon, \quad
    \hat x_{n+1} = x_n + (\sigma_{n+1}-\sigma_n)\,\hat v_{\text{teacher}}(x_n, \sigma_n), \quad
    \mathcal L = \lVert f_\theta(x_n, \sigma_n) - \mathrm{sg}\, f_{\theta^-}(\hat x_{n+1}, \sigma_{n+1})\rVert^2

with :math:`f(x,\sigma) = x - \sigma v(x,\sigma)` (:func:`cf_ref.distill.cd.consistency_distillation_loss`).
Teacher (guided, scale 3), student and EMA target :math:`\theta^-` (decay 0.99) all start from the AR
teacher and all see the ground-truth clean context in the teacher-forcing layout. The exported ``model``
is the student; ``ema`` is the target network. Two options reproduce the authors' trainer where it departs from
this (docs/full.md, "Where we differ"): ``cd.time_dtype=bfloat16`` (their bf16 timesteps and teacher step, x̂0 on
their 1000-step grid) and ``cd.ema_first_update=blend`` (their EMA blends from the first step).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from cf_ref.distill.cd import CDTimes, consistency_distillation_loss, sample_grid_indices
from cf_ref.masks import AttentionMode
from cf_ref.solvers import Method
from full.config import RunConfig, TimeDtype
from full.data import SetKind
from full.distributed import DistContext
from full.recipes import Stage
from full.stage_inputs import stage_inputs
from full.stages.batches import Batches, check_text, latent_shape, open_set, stage_batches
from full.stages.fields import guided_field, velocity_field
from full.stages.models import build_model, frozen, trainable
from full.stages.previews import few_step_sample, preview_sampler
from full.stages.randomness import step_random
from full.train import StagePlan, Trainee, Update, make_optimizer

STAGE = Stage.CD
TF = AttentionMode.TEACHER_FORCING


def cd_loss(
    config: RunConfig,
    ctx: DistContext,
    feed: Batches,
    models: tuple[nn.Module, nn.Module, nn.Module],
    step: int,
    micro: int,
) -> Tensor:
    """The loss of the module doc on micro-batch ``micro`` of ``step``; ``models`` = (student, EMA target, teacher)."""
    student, target, teacher = models
    cfg, b = config.cd, config.model.block_size
    batch = feed.fetch(step, micro)
    x0, text = batch["latents"], batch["text"]
    rnd = step_random(config, ctx, STAGE.value, step, micro, "loss")
    eps = rnd.normal(x0.shape, x0.device)
    index = sample_grid_indices(x0.shape[0], config.video.latent_frames, config.schedule.ode_steps, generator=rnd.cpu)
    teacher_field = guided_field(teacher, text, feed.negative(x0.shape[0]), cfg.guidance_scale, TF, b, x0)
    return consistency_distillation_loss(
        velocity_field(student, text, TF, b, x0),
        velocity_field(target, text, TF, b, x0),
        teacher_field,
        x0,
        eps,
        config.schedule.grid(torch.float32).to(x0.device),
        index,
        Method.EULER,
        cd_times(config),
    )


def cd_times(config: RunConfig) -> CDTimes | None:
    """How the networks read the grid (``cd.time_dtype``): None = exact σ_n; bfloat16 = the authors' CD trainer
    (:meth:`cf_ref.distill.cd.CDTimes.rounded`, x̂0 on their 1000-step grid of the model's shift)."""
    if config.cd.time_dtype is TimeDtype.FLOAT32:
        return None
    return CDTimes.rounded(config.schedule.grid(), config.schedule.shift, config.cd.time_dtype.torch)


def plan(config: RunConfig, ctx: DistContext) -> StagePlan:
    cfg = config.cd
    student_model = build_model(config, stage_inputs(config, STAGE).init, "CD student")
    data = open_set(config.data.latents, SetKind.LATENTS, "cd")
    data.check_latent_shape(latent_shape(config, student_model))
    check_text(data, student_model)
    teacher = frozen(copy.deepcopy(student_model), config, ctx)
    target = frozen(copy.deepcopy(student_model), config, ctx, cast=False)
    student = trainable(student_model, config, ctx)
    optimizer = make_optimizer(student, cfg.optim)
    trainee = Trainee(
        "student",
        student,
        optimizer,
        cfg.optim.max_grad_norm,
        ema=target,
        ema_decay=cfg.ema_decay,
        ema_first=cfg.ema_first_update,
    )
    feed = stage_batches(data, config, ctx, cfg.loop.batch_size, cfg.loop.grad_accum, STAGE.value)

    def updates(step: int) -> list[Update]:
        return [
            Update("student", lambda micro: (cd_loss(config, ctx, feed, (student, target, teacher), step, micro), {}))
        ]

    def generate(text, negative, noise):
        return few_step_sample(student, config, text, noise)

    sample = preview_sampler(config, ctx, data, latent_shape(config, student_model), generate)
    exports = {"model": student, "ema": target}
    return StagePlan(STAGE.value, {"student": trainee}, updates, exports=exports, sample=sample)
