r"""Stage ``ode``: ODE regression of the few-step causal student on stored PF-ODE pairs.

For a pair (states :math:`x_{\sigma_k}` at the few-step list, end point :math:`x_0^\star`), draw one index k
per video (``index_granularity=sample``, published) or per block, and regress

.. math::  \mathcal L = \lVert x_{\sigma_k} - \sigma_k\, v_\theta(x_{\sigma_k}, \sigma_k \mid \text{ctx}) - x_0^\star \rVert^2

(:func:`cf_ref.distill.ode.ode_regression_loss`). The student's context follows the pairs, as recorded in
the set's metadata: pairs from the AR teacher carry the ground-truth clean frames and the student sees them
in the teacher-forcing layout (Causal Forcing); pairs from the bidirectional model have none and the
student is block-causal over the noisy states (CausVid / Self Forcing).
"""

from __future__ import annotations

import torch

from cf_ref.distill.ode import ode_regression_loss
from cf_ref.granularity import sample_indices
from cf_ref.masks import AttentionMode
from cf_ref.recipes import PairTeacher
from full.config import RunConfig
from full.data import DataError, SetKind, TensorSet
from full.distributed import DistContext
from full.recipes import Stage
from full.stage_inputs import stage_inputs
from full.stages.batches import check_text, latent_shape, stage_batches
from full.stages.fields import velocity_field
from full.stages.models import build_model, trainable
from full.stages.previews import few_step_sample, preview_sampler
from full.stages.randomness import step_random
from full.train import StagePlan, Trainee, Update, make_optimizer

STAGE = Stage.ODE


def check_pairs(pairs: TensorSet, config: RunConfig) -> PairTeacher:
    """The pairs must sit at this run's few-step σ list and block size; returns whose PF-ODE they follow."""
    meta = pairs.meta
    teacher = PairTeacher(meta.get("teacher", "?")) if meta.get("teacher") in {t.value for t in PairTeacher} else None
    if teacher is None:
        raise DataError(f"{pairs.path}: the pair set does not record its teacher (meta.teacher)")
    expected = config.schedule.student_sigmas()
    got = torch.tensor(meta.get("sigmas", []), dtype=torch.float64)
    if got.shape != expected.shape or not torch.allclose(got, expected, atol=1e-6):
        raise DataError(
            f"{pairs.path}: pairs were kept at σ = {got.tolist()}, but this run's few-step list is "
            f"{expected.tolist()} (schedule.timesteps, schedule.shift)"
        )
    if teacher is PairTeacher.AR and meta.get("block_size") != config.model.block_size:
        raise DataError(
            f"{pairs.path}: pairs were made with block size {meta.get('block_size')}, this run uses "
            f"{config.model.block_size} (the teacher-forcing context depends on it)"
        )
    if teacher is PairTeacher.AR and "clean" not in pairs.fields:
        raise DataError(f"{pairs.path}: AR-teacher pairs must store the clean context ('clean')")
    return teacher


def plan(config: RunConfig, ctx: DistContext) -> StagePlan:
    cfg, b = config.ode, config.model.block_size
    inputs = stage_inputs(config, STAGE)
    pairs = TensorSet(inputs.pairs, SetKind.ODE_PAIRS, verify=True)  # an earlier stage's output: checksums
    teacher = check_pairs(pairs, config)
    model = build_model(config, inputs.init, "ODE student")
    pairs.check_latent_shape(latent_shape(config, model), field="target")
    check_text(pairs, model)
    runner = trainable(model, config, ctx)
    trainee = Trainee("student", runner, make_optimizer(runner, cfg.optim), cfg.optim.max_grad_norm)
    feed = stage_batches(pairs, config, ctx, cfg.loop.batch_size, cfg.loop.grad_accum, STAGE.value)
    sigmas = torch.tensor(pairs.meta["sigmas"], dtype=torch.float32, device=ctx.device)
    mode = AttentionMode.TEACHER_FORCING if teacher is PairTeacher.AR else AttentionMode.BLOCK_CAUSAL

    def loss(step: int, micro: int):
        batch = feed.fetch(step, micro)
        states, target, text = batch["states"], batch["target"], batch["text"]
        rnd = step_random(config, ctx, STAGE.value, step, micro, "loss")
        index = sample_indices(
            states.shape[0], states.shape[2], states.shape[1], cfg.index_granularity, b, generator=rnd.cpu
        )
        student = velocity_field(runner, text, mode, b, batch.get("clean"))
        return ode_regression_loss(student, states, sigmas, target, index), {}

    def updates(step: int) -> list[Update]:
        return [Update("student", lambda micro: loss(step, micro))]

    def generate(text, negative, noise):
        return few_step_sample(runner, config, text, noise)

    sample = preview_sampler(config, ctx, pairs, latent_shape(config, model), generate)
    return StagePlan(STAGE.value, {"student": trainee}, updates, exports={"model": runner}, sample=sample)
