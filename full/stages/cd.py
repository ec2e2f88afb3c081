r"""Stage ``cd``: causal consistency distillation along the AR teacher's PF-ODE (Causal Forcing++).

No stored pairs: from a clean video :math:`x_0` and noise ε, with the shifted N-step grid (N = 48) and one
grid index n per video,

.. math::
    x_n = (1-\sigma_n)x_0 + \sigma_n\varepsilon, \quad
    \hat x_{n+1} = x_n + (\sigma_{n+1}-\sigma_n)\,\hat v_{\text{teacher}}(x_n, \sigma_n), \quad
    \mathcal L = \lVert f_\theta(x_n, \sigma_n) - \mathrm{sg}\, f_{\theta^-}(\hat x_{n+1}, \sigma_{n+1})\rVert^2

with :math:`f(x,\sigma) = x - \sigma v(x,\sigma)` (:func:`cf_ref.distill.cd.consistency_distillation_loss`).
Teacher (guided, scale 3), student and EMA target :math:`\theta^-` (decay 0.99) all start from the AR
teacher and all see the ground-truth clean context in the teacher-forcing layout. The exported ``model``
is the student; ``ema`` is the target network.
"""

from __future__ import annotations

import copy

from cf_ref.distill.cd import consistency_distillation_loss, sample_grid_indices
from cf_ref.masks import AttentionMode
from cf_ref.schedule import sigma_grid
from cf_ref.solvers import Method
from full.config import RunConfig, Stage
from full.data import SetKind
from full.distributed import DistContext
from full.recipes import stage_inputs
from full.stages import common
from full.train import StagePlan, Trainee, Update, make_optimizer

STAGE = Stage.CD


def plan(config: RunConfig, ctx: DistContext) -> StagePlan:
    cfg, b = config.cd, config.model.block_size
    init = stage_inputs(config, STAGE).init
    student_model = common.build_model(config, init, "CD student")
    data = common.open_set(config.data.latents, SetKind.LATENTS, "cd")
    data.check_latent_shape(common.latent_shape(config, student_model))
    common.check_text(data, student_model)
    teacher = common.frozen(copy.deepcopy(student_model), config, ctx)
    target = common.frozen(copy.deepcopy(student_model), config, ctx, cast=False)
    student = common.trainable(student_model, config, ctx)
    trainee = Trainee(
        "student",
        student,
        make_optimizer(student, cfg.optim),
        cfg.optim.max_grad_norm,
        ema=target,
        ema_decay=cfg.ema_decay,
        ema_start=0,
    )
    feed = common.batches(data, config, ctx, cfg.loop.batch_size, cfg.loop.grad_accum, STAGE.value)
    grid = sigma_grid(cfg.num_steps, config.model.shift).float()
    tf = AttentionMode.TEACHER_FORCING
    frames = config.video.latent_frames

    def loss(step: int, micro: int):
        batch = feed.fetch(step, micro)
        x0, text = batch["latents"], batch["text"]
        rnd = common.step_random(config, ctx, STAGE.value, step, micro, "loss")
        eps = rnd.normal(x0.shape, x0.device)
        index = sample_grid_indices(x0.shape[0], frames, cfg.num_steps, generator=rnd.cpu)
        teacher_field = common.guided_field(teacher, text, feed.negative(x0.shape[0]), cfg.guidance_scale, tf, b, x0)
        value = consistency_distillation_loss(
            common.velocity_field(student, text, tf, b, x0),
            common.velocity_field(target, text, tf, b, x0),
            teacher_field,
            x0,
            eps,
            grid.to(x0.device),
            index,
            Method.EULER,
        )
        return value, {}

    def updates(step: int) -> list[Update]:
        return [Update("student", lambda micro: loss(step, micro))]

    sample = common.sampler(
        config,
        ctx,
        data,
        common.latent_shape(config, student_model),
        lambda text, negative, noise: common.few_step_sample(student, config, text, noise),
    )
    return StagePlan(
        STAGE.value, {"student": trainee}, updates, exports={"model": student, "ema": target}, sample=sample
    )
