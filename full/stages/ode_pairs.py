r"""Stage ``ode-pairs``: PF-ODE trajectories for ODE distillation.

For each latent video :math:`x_0` with text (and noise ε drawn from a seed of the item's index, so the pairs
do not depend on batching or the number of processes), integrate with Euler on the shifted grid
``config.schedule.grid()`` (:class:`cf_ref.schedule.FewStepSchedule`, N = 48):

.. math::  \frac{dx}{d\sigma} = \hat v(x, \sigma), \quad x(1) = \varepsilon, \qquad
           \hat v = v_\varnothing + w\,(v_c - v_\varnothing) \quad (w = 6)

and keep the states at the few-step σ list (grid indices 0, N/K, 2N/K, …) plus the end point:

* ``teacher=ar`` (Causal Forcing): :math:`v` is the AR teacher under **ground-truth clean context** —
  the teacher-forcing forward with ``clean = x_0``; block j's trajectory depends on its own noise and the
  clean frames of earlier blocks only, so the pairs are frame-level injective for a causal student that
  sees the same clean context. The set stores ``clean`` for the ODE stage.
* ``teacher=bidirectional`` (CausVid / Self Forcing baseline): :math:`v` is the bidirectional base model
  from noise; block j's end point depends on every block's noise.

The set (``ode-pairs`` kind) holds ``states [K, F, C, H, W]``, ``target [F, C, H, W]``, ``text`` (and
``clean``); its ``meta`` records the teacher, σ list, grid size, guidance and block size.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from cf_ref.checksums import embedded_digest, file_digest
from cf_ref.masks import AttentionMode
from cf_ref.recipes import PairTeacher
from cf_ref.seeding import generator
from cf_ref.solvers import Method, Trajectory, integrate
from full.config import Parallelism, Precision, RunConfig
from full.data import INDEX, SetKind, ShardWriter, TensorSet
from full.distributed import DistContext, barrier, place_frozen
from full.dtypes import cast_keeping_fp32
from full.recipes import Stage
from full.stage_inputs import StageInputs, stage_dir, stage_inputs
from full.stages.batches import check_text, latent_shape, open_set
from full.stages.fields import guided_field
from full.stages.models import build_model

STAGE = Stage.ODE_PAIRS


def teacher_map(runner, config: RunConfig, text, negative, clean, keep_at):
    """The guided PF-ODE map of the configured teacher: ``eps [B, F, C, H, W] -> Trajectory``."""
    cfg, b = config.ode_pairs, config.model.block_size
    mode = AttentionMode.TEACHER_FORCING if cfg.teacher is PairTeacher.AR else AttentionMode.BIDIRECTIONAL
    field = guided_field(runner, text, negative, cfg.guidance_scale, mode, b, clean)
    grid = config.schedule.grid()

    def run(eps) -> Trajectory:
        with torch.no_grad():
            return integrate(field, eps, grid, Method.EULER, keep_at=keep_at)

    return run


def _teacher(config: RunConfig, ctx: DistContext, inputs: StageInputs, data: TensorSet) -> nn.Module:
    """The frozen teacher, checked against the set. Replicated, not sharded: each process integrates its own
    shards, so processes run different numbers of forward passes, which FSDP (a collective per pass) cannot do.
    The frozen teacher fits one device."""
    cfg = config.ode_pairs
    model = build_model(config, inputs.init, f"{cfg.teacher.value} teacher")
    data.check_latent_shape(latent_shape(config, model))
    check_text(data, model)
    if cfg.precision is Precision.BF16:
        cast_keeping_fp32(model, torch.bfloat16)
    return place_frozen(model, ctx, Parallelism.DDP, cfg.precision)


def _meta(config: RunConfig, inputs: StageInputs, data: TensorSet) -> dict:
    """What the set records about how it was made (:func:`full.stages.ode.check_pairs` reads it)."""
    s = config.schedule
    return {
        "teacher": config.ode_pairs.teacher.value,
        "sigmas": s.student_sigmas().tolist(),  # float64: exactly on the grid
        "num_steps": s.ode_steps,
        "guidance_scale": config.ode_pairs.guidance_scale,
        "block_size": config.model.block_size,
        "shift": s.shift,
        "source": str(data.path),
        "weights": str(inputs.init) if inputs.init else "base model",
    }


def _request(config: RunConfig, inputs: StageInputs, data: TensorSet, count: int) -> dict:
    """What the pairs depend on, for the writer's same-request check: the metadata without file locations, the
    teacher weights by their checksum and the source set by its index (a moved run folder still matches)."""
    meta = {k: v for k, v in _meta(config, inputs, data).items() if k not in ("source", "weights")}
    weights = "base model" if inputs.init is None else (embedded_digest(inputs.init) or str(inputs.init))
    index = file_digest(data.path / INDEX)
    cfg = config.ode_pairs
    return {**meta, "weights": weights, "source_index": index, "count": count, "seed": config.seed,
            "storage": cfg.storage.value, "precision": cfg.precision.value}  # fmt: skip


def _pair_group(runner: nn.Module, config: RunConfig, ctx: DistContext, data: TensorSet, items: list[int]):
    """The pairs of source items ``items`` (one shard), ``cfg.batch_size`` videos per teacher call; the noise of
    item i is drawn from a generator of ``(seed, i)`` alone."""
    cfg = config.ode_pairs
    keep = config.schedule.student_sigmas()
    fields: dict[str, list[Tensor]] = {"states": [], "target": [], "text": [], "clean": []}
    for start in range(0, len(items), cfg.batch_size):
        chunk = items[start : start + cfg.batch_size]
        batch = {k: v.to(ctx.device, torch.float32) for k, v in data.fetch(chunk).items()}
        x0, text = batch["latents"], batch["text"]
        negative = data.negative.to(ctx.device, torch.float32)[None].expand(len(chunk), -1, -1)
        eps = torch.stack(
            [
                torch.randn(
                    x0.shape[1:], generator=generator(ctx.device, config.seed, "ode-pairs", i), device=ctx.device
                )
                for i in chunk
            ]
        )
        clean = x0 if cfg.teacher is PairTeacher.AR else None
        traj = teacher_map(runner, config, text, negative, clean, keep)(eps)
        fields["states"].append(traj.states.float().cpu())
        fields["target"].append(traj.end.float().cpu())
        fields["text"].append(text.cpu())
        fields["clean"].append(x0.cpu())
    names = [k for k in fields if k != "clean" or cfg.teacher is PairTeacher.AR]
    return {k: torch.cat(fields[k]).to(cfg.storage.torch) for k in names}


def make_pairs(config: RunConfig, ctx: DistContext) -> Path:
    """Write the pair set to ``<out>/ode-pairs`` (resumable shard by shard); returns its folder."""
    from tqdm.auto import tqdm

    cfg = config.ode_pairs
    inputs = stage_inputs(config, STAGE)
    data = open_set(config.data.latents, SetKind.LATENTS, "ode-pairs")
    runner = _teacher(config, ctx, inputs, data)
    count = len(data) if cfg.max_pairs is None else min(cfg.max_pairs, len(data))
    out = stage_dir(config, STAGE)
    request = _request(config, inputs, data, count)
    writer = ShardWriter(out, SetKind.ODE_PAIRS, cfg.shard_size, meta=_meta(config, inputs, data), request=request)
    groups = writer.pending_groups(count, ctx.rank, ctx.world_size)
    bar = tqdm(total=len(groups), desc=STAGE.value, disable=not (ctx.is_main and config.logging.progress))
    for g, items in groups:
        writer.write_group(g, _pair_group(runner, config, ctx, data, items), [data.captions[i] for i in items])
        bar.update(1)
    bar.close()
    barrier(ctx)
    if ctx.is_main:
        writer.write_negative(data.negative)
        writer.finish(count)
    barrier(ctx)
    return out
